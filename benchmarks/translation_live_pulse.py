"""Live translation latency through a real virtual audio device: a PulseAudio null sink.

Real LJ Speech recordings are played into the null sink; the live loop records its monitor
through PortAudio (the ALSA ``pulse`` device), runs silero VAD → end-pointing → ASR (Whisper
partials while the speech plays) → MT → eSpeak NG, and plays the translation back into the
same sink (the microphone is gated meanwhile). Reported, from the app's own events:

- end of speech → translated text, and → first synthesized sample written to the device,
  for the session's first utterance and as median / p90 over the rest;
- WER of the live transcripts (Whisper English normalizer), partial updates per utterance;
- peak resident memory of the process.

Needs ``apt install pulseaudio pulseaudio-utils libasound2-plugins libportaudio2``. Whisper
tiny.en is installed into a temporary store from ../shared with ``edgewise pull --from``.

    python benchmarks/translation_live_pulse.py [--utterances 8] [--asr auto|pocketsphinx] [--json]
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("EDGEWISE_SHARED", REPO.parent / "shared"))
LJ = SHARED / "data" / "speech" / "ljspeech"
SINK = "ew_bench"


@contextlib.contextmanager
def null_sink():
    if not shutil.which("pulseaudio") or not shutil.which("pactl"):
        raise SystemExit("PulseAudio is not installed (apt install pulseaudio pulseaudio-utils libasound2-plugins)")
    # a private server (own runtime folder): no other user of the machine's default server can stop it
    runtime = tempfile.mkdtemp(prefix="ew_pulse_")
    os.environ["PULSE_RUNTIME_PATH"] = runtime
    started = subprocess.run(["pulseaudio", "--check"]).returncode != 0
    if started:
        subprocess.run(["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "--system=false"],
                       timeout=20, capture_output=True)
    mod = subprocess.run(["pactl", "load-module", "module-null-sink", f"sink_name={SINK}"],
                         capture_output=True, text=True, timeout=10)
    if mod.returncode != 0:
        raise SystemExit(f"could not create a PulseAudio null sink: {mod.stderr.strip()}")
    os.environ["PULSE_SINK"], os.environ["PULSE_SOURCE"] = SINK, f"{SINK}.monitor"
    try:
        yield "pulse"
    finally:
        subprocess.run(["pactl", "unload-module", mod.stdout.strip()], timeout=10)
        if started:
            subprocess.run(["pulseaudio", "--kill"], timeout=10)
        shutil.rmtree(runtime, ignore_errors=True)


def pick(n: int) -> list[tuple[str, str, np.ndarray]]:
    from apps.mobile_translation.audio_io import read_audio_16k

    rows = [r for r in csv.reader((LJ / "transcripts.tsv").open(encoding="utf-8"), delimiter="\t")
            if r and r[0] != "id"]
    out = []
    for rid, text in rows:
        a, _ = read_audio_16k(LJ / f"{rid}.wav")
        if len(a) <= 7 * 16000:    # under the live end-pointer's 12 s cut, and short turns of a conversation
            out.append((rid, text, a))
    return out[:n]


def pct(xs, q):
    return round(float(np.percentile(xs, q)), 3) if xs else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utterances", type=int, default=8)
    ap.add_argument("--asr", default="auto", choices=["auto", "pocketsphinx"])
    ap.add_argument("--to", default="es")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import logging

    logging.getLogger("edgewise").setLevel(logging.ERROR)
    from sdk.bench import peak_memory_bytes
    from sdk.cli.main import main as cli
    from sdk.runtime import discover_device

    dev = discover_device()
    clips = pick(args.utterances)
    with tempfile.TemporaryDirectory() as home, null_sink() as device:
        os.environ["EDGEWISE_HOME"] = home
        if args.asr == "auto":
            with contextlib.redirect_stdout(io.StringIO()):
                cli(["pull", "whisper-tiny-en", "--from", str(SHARED / "models" / "whisper-tiny.en"),
                     "--trust-on-first-use", "--json"])
        from apps.mobile_translation.engines import EngineConfig
        from apps.mobile_translation.live import LiveConfig, LiveTranslator
        from sdk.pipeline import SpeakerSink

        events: list[dict] = []
        cfg = LiveConfig(engines=EngineConfig(src="en", tgt=args.to, asr=args.asr, num_beams=1),
                         input_device=device, output_device=device, speak=True, max_reopen_attempts=1)
        with LiveTranslator(cfg, on_event=events.append) as lt:
            plan = lt.engines.plan.describe()
            warm_s = lt.stage_s.get("warm_up", 0.0)
            lt.start()
            end = time.monotonic() + 20
            while time.monotonic() < end and not lt.counters["streams_opened"]:
                time.sleep(0.05)
            time.sleep(2.0)  # the ALSA-pulse input needs a moment before audio flows
            player = SpeakerSink(sample_rate=16000, device=device, buffer_s=30.0).open()   # a whole clip
            for _rid, _, audio in clips:
                before = lt.counters["translated"] + lt.counters["empty_transcripts"]
                player.write(np.concatenate([audio, np.zeros(8000, np.float32)]))
                deadline = time.monotonic() + len(audio) / 16000 + 20
                while time.monotonic() < deadline and \
                        lt.counters["translated"] + lt.counters["empty_transcripts"] <= before:
                    time.sleep(0.02)
                while time.monotonic() < lt._gate_until + 0.3:   # let the translation play out
                    time.sleep(0.05)
                time.sleep(0.5)
            player.close()
            lt.stop()
            stats = lt.stats()
    utts = [e for e in events if e["event"] == "utterance"]
    partials = [e for e in events if e["event"] == "partial"]
    lat_t = [u["latency_text_s"] for u in utts]
    lat_a = [u["latency_audio_s"] for u in utts if "latency_audio_s" in u]
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    wer = jiwer.wer(norm(" ".join(t for _, t, _ in clips)), norm(" ".join(u["text"] for u in utts))) if utts else None
    res = {"cpu": dev.cpu_model, "isa": ",".join(k for k, v in dev.isa.items() if v), "engines": plan,
           "warm_up_s": round(warm_s, 3), "utterances_played": len(clips), "utterances_translated": len(utts),
           "first": {"text_s": lat_t[0] if lat_t else None, "first_audio_s": lat_a[0] if lat_a else None},
           "rest": {"text_median_s": pct(lat_t[1:], 50), "text_p90_s": pct(lat_t[1:], 90),
                    "first_audio_median_s": pct(lat_a[1:], 50), "first_audio_p90_s": pct(lat_a[1:], 90)},
           "end_pointing_silence_s": cfg.endpoint.min_silence_ms / 1000,
           "partials_per_utterance": round(len(partials) / max(1, len(utts)), 1), "wer": wer and round(wer, 4),
           "peak_rss_mib": round((peak_memory_bytes() or 0) / 2**20, 1), "rtf": stats["rtf"],
           "examples": [{"text": u["text"], "translation": u["translation"]} for u in utts[:2]],
           "heard": [u["text"] for u in utts],
           "breakdown": [{k: u.get(k) for k in ("latency_text_s", "endpoint_s", "queued_s", "asr_mt_s")}
                         for u in utts],
           "played": [t for _, t, _ in clips],
           "load_average_1min": round(os.getloadavg()[0], 2), "stats": stats}
    if args.json:
        print(json.dumps(res, indent=2, ensure_ascii=False))
        return 0
    print(f"CPU {res['cpu']} (ISA {res['isa']}); load average {res['load_average_1min']}; engines {plan}; "
          f"warm-up {res['warm_up_s']} s")
    print(f"{len(utts)}/{len(clips)} LJ Speech utterances translated through the PulseAudio null sink; "
          f"WER {res['wer']}; "
          f"{res['partials_per_utterance']} partial updates per utterance")
    print(f"first utterance: end of speech -> text {res['first']['text_s']} s, "
          f"-> first sample {res['first']['first_audio_s']} s")
    r = res["rest"]
    print(f"the others: text median {r['text_median_s']} s (p90 {r['text_p90_s']}), first sample median "
          f"{r['first_audio_median_s']} s (p90 {r['first_audio_p90_s']}); end-pointing silence "
          f"{res['end_pointing_silence_s']} s included; peak RSS {res['peak_rss_mib']} MiB")
    for ex in res["examples"]:
        print(f"  {ex['text']!r} -> {ex['translation']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
