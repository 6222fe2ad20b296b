"""Live translation latency through a real virtual audio device: a PulseAudio null sink.

Real LJ Speech recordings are played into the null sink by ``pacat``, a process of its own;
the live loop records its monitor through PortAudio (the ALSA ``pulse`` device), runs silero
VAD → end-pointing → ASR (Whisper partials while the speech plays) → MT → eSpeak NG, and
plays the translation back into the same sink (the microphone is gated meanwhile).

The speaker is a separate process because a person speaking is no part of the app: a player
inside this process (a PortAudio stream, as before) starved while the app decoded, PulseAudio
filled the holes with silence or skipped the late audio, and the holes cut utterances in two
(the reply to the first part then muted the microphone over the rest). ``player_underruns``
counts holes inside a clip: 0 for a clean run.

Reported, from the app's own events:

- end of speech → translated text, and → first synthesized sample written to the device,
  for the session's first utterance and as median / p90 over the rest;
- WER of the live transcripts (Whisper English normalizer), partial updates per utterance;
- peak resident memory of the process.

Needs ``apt install pulseaudio pulseaudio-utils libasound2-plugins libportaudio2`` (pacat is in
pulseaudio-utils). Whisper tiny.en is installed into a temporary store from ../shared with ``edgewise pull --from``.

    python benchmarks/translation_live_pulse.py [--utterances 8] [--asr auto|pocketsphinx] [--no-decode-on-pause]
                                                [--trace] [--json]
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
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


class Player:
    """Plays clips into the null sink through ``pacat``, a process of its own, and counts the underruns
    inside a clip (each one a hole in the speech the app hears)."""

    def __init__(self, folder: str):
        if not shutil.which("pacat"):
            raise SystemExit("pacat is not installed (apt install pulseaudio-utils)")
        self.folder, self.underruns, self._proc, self._n = Path(folder), 0, None, 0

    def play(self, audio: np.ndarray) -> None:
        self.wait()
        f = self.folder / f"clip{self._n}.f32"
        self._n += 1
        np.asarray(audio, "<f4").tofile(f)
        self._proc = subprocess.Popen(["pacat", "--playback", "-v", f"--device={SINK}", "--format=float32le",
                                       "--rate=16000", "--channels=1", "--raw", str(f)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait(self) -> None:
        if self._proc is not None:
            _, err = self._proc.communicate(timeout=60)
            # PulseAudio reports one underrun when a clip's last sample has played: not a hole
            self.underruns += max(0, err.count("Stream underrun") - 1)
            self._proc = None


class CallbackTrace:
    """``--trace``: the PortAudio callbacks' own times, a check that does not trust the app's stamps.

    Microphone: (time, loudest sample, samples waiting in the ring); speakers: (time, samples
    queued, which sink). End of speech = the last loud microphone callback of a clip; first
    sample = when the app's speaker queue stops being empty after it.
    """

    def __init__(self):
        import sdk.pipeline.sound_devices as sd_mod

        self.mic: list[tuple[float, float, int]] = []
        self.spk: list[tuple[float, int, int]] = []
        mic_cb, spk_cb = sd_mod.MicrophoneSource._callback, sd_mod.SpeakerSink._callback

        def mic(src, indata, frames, time_info, status):
            mic_cb(src, indata, frames, time_info, status)
            self.mic.append((time.monotonic(), float(np.abs(indata).max()) if frames else 0.0, src.ring.available))

        def spk(sink, outdata, frames, time_info, status):
            spk_cb(sink, outdata, frames, time_info, status)
            self.spk.append((time.monotonic(), sink.ring.available, id(sink)))

        sd_mod.MicrophoneSource._callback, sd_mod.SpeakerSink._callback = mic, spk

    def check(self, player_writes: list[float], loud: float = 0.02) -> dict:
        mic = np.array(self.mic) if self.mic else np.zeros((0, 3))
        app = self.spk    # the only speaker in this process is the app's (the player is pacat)
        starts = [b[0] for a, b in itertools.pairwise(app) if a[1] == 0 and b[1] > 0] + ([app[0][0]] if app else [])
        out = []
        for k, p in enumerate(player_writes):
            nxt = player_writes[k + 1] if k + 1 < len(player_writes) else float("inf")
            w = min((x for x in starts if x > p + 0.3), default=None)
            sel = (mic[:, 1] > loud) & (mic[:, 0] > p) & (mic[:, 0] < (w or nxt)) if len(mic) else np.zeros(0, bool)
            if w is not None and w < nxt and sel.any():
                out.append(round(w - float(mic[sel, 0][-1]), 3))
        return {"speech_end_to_first_sample_s": out, "median_s": pct(out, 50), "p90_s": pct(out, 90),
                "mic_ring_max_ms": round(float(mic[:, 2].max()) / 16.0, 1) if len(mic) else None}


def pct(xs, q):
    return round(float(np.percentile(xs, q)), 3) if xs else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utterances", type=int, default=8)
    ap.add_argument("--asr", default="auto", choices=["auto", "pocketsphinx"])
    ap.add_argument("--to", default="es")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--decode-on-pause", action=argparse.BooleanOptionalAction, default=None,
                    help="Whisper also starts the final decode as soon as the speaker pauses "
                    "(LiveConfig.decode_on_pause; default: LiveConfig's, on)")
    ap.add_argument("--trace", action="store_true", help="also check the latency from the PortAudio callbacks' "
                    "own times (see CallbackTrace)")
    args = ap.parse_args()
    trace = CallbackTrace() if args.trace else None
    player_writes: list[float] = []
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

        events: list[dict] = []
        cfg = LiveConfig(engines=EngineConfig(src="en", tgt=args.to, asr=args.asr, num_beams=1),
                         input_device=device, output_device=device, speak=True, max_reopen_attempts=1,
                         **({} if args.decode_on_pause is None else {"decode_on_pause": args.decode_on_pause}))
        with LiveTranslator(cfg, on_event=events.append) as lt:
            plan = lt.engines.plan.describe()
            warm_s = lt.warm_up_s
            lt.start()
            end = time.monotonic() + 20
            while time.monotonic() < end and not lt.counters["streams_opened"]:
                time.sleep(0.05)
            time.sleep(2.0)  # the ALSA-pulse input needs a moment before audio flows
            player = Player(home)
            for _rid, _, audio in clips:
                c = lt.counters
                empty0, played0 = c["empty_transcripts"], c["played"] + c["output_errors"]
                player_writes.append(time.monotonic())
                player.play(np.concatenate([audio, np.zeros(8000, np.float32)]))
                deadline = time.monotonic() + len(audio) / 16000 + 20
                while time.monotonic() < deadline:   # until its translation plays (or nothing was heard)
                    c = lt.counters
                    if c["empty_transcripts"] > empty0 or c["played"] + c["output_errors"] > played0:
                        break
                    time.sleep(0.02)
                while time.monotonic() < lt.gate.open_at + 0.3:   # let the translation play out
                    time.sleep(0.05)
                time.sleep(0.5)
            player.wait()
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
           "decode_on_pause": cfg.decode_on_pause,
           "warm_up_s": round(warm_s, 3), "utterances_played": len(clips), "utterances_translated": len(utts),
           "first": {"text_s": lat_t[0] if lat_t else None, "first_audio_s": lat_a[0] if lat_a else None},
           "rest": {"text_median_s": pct(lat_t[1:], 50), "text_p90_s": pct(lat_t[1:], 90),
                    "first_audio_median_s": pct(lat_a[1:], 50), "first_audio_p90_s": pct(lat_a[1:], 90)},
           "end_pointing_silence_s": cfg.endpoint.min_silence_ms / 1000,
           "partials_per_utterance": round(len(partials) / max(1, len(utts)), 1), "wer": wer and round(wer, 4),
           "peak_rss_mib": round((peak_memory_bytes() or 0) / 2**20, 1), "rtf": stats["rtf"],
           "examples": [{"text": u["text"], "translation": u["translation"]} for u in utts[:2]],
           "heard": [u["text"] for u in utts],
           "breakdown": [{k: u.get(k) for k in ("latency_text_s", "latency_audio_s", "endpoint_s", "queued_s", "asr_s",
                                                "mt_s", "tts_s")} for u in utts],
           "stage_age_p50_s": {k: round(v["age"]["p50_ms"] / 1e3, 3) for k, v in stats["stages"].items()
                               if v["age"]["count"]},
           "all": {"text_median_s": pct(lat_t, 50), "text_p90_s": pct(lat_t, 90),
                   "first_audio_median_s": pct(lat_a, 50), "first_audio_p90_s": pct(lat_a, 90)},
           "played": [t for _, t, _ in clips],
           "load_average_1min": round(os.getloadavg()[0], 2), "player_underruns": player.underruns, "stats": stats,
           "trace_check": trace.check(player_writes) if trace is not None else None}
    if args.json:
        print(json.dumps(res, indent=2, ensure_ascii=False))
        return 0
    print(f"CPU {res['cpu']} (ISA {res['isa']}); load average {res['load_average_1min']}; engines {plan}; "
          f"warm-up {res['warm_up_s']} s")
    print(f"{len(utts)}/{len(clips)} LJ Speech utterances translated through the PulseAudio null sink; "
          f"WER {res['wer']}; "
          f"{res['partials_per_utterance']} partial updates per utterance; player underruns {res['player_underruns']}")
    a = res["all"]
    print(f"all utterances: text median {a['text_median_s']} s (p90 {a['text_p90_s']}), first sample median "
          f"{a['first_audio_median_s']} s (p90 {a['first_audio_p90_s']})")
    print(f"first utterance: end of speech -> text {res['first']['text_s']} s, "
          f"-> first sample {res['first']['first_audio_s']} s")
    r = res["rest"]
    print(f"the others: text median {r['text_median_s']} s (p90 {r['text_p90_s']}), first sample median "
          f"{r['first_audio_median_s']} s (p90 {r['first_audio_p90_s']}); end-pointing silence "
          f"{res['end_pointing_silence_s']} s included; peak RSS {res['peak_rss_mib']} MiB")
    if trace is not None:
        tc = res["trace_check"]
        print(f"callback trace: end of speech -> first sample median {tc['median_s']} s (p90 {tc['p90_s']}); "
              f"microphone ring at most {tc['mic_ring_max_ms']} ms")
    for ex in res["examples"]:
        print(f"  {ex['text']!r} -> {ex['translation']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
