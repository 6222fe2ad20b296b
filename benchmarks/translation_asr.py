"""Speech recognition through `translate file`: WER, RTF and peak memory of each recogniser.

Each of the 22 LJ Speech recordings in ../shared goes through the app's file mode
(``apps.mobile_translation.filemode.translate_file``: silero VAD, segmentation, the
recogniser; ``--to en`` so no MT stage), exactly what ``edgewise translate file X.wav
--from en --to en`` runs. WER is scored with Whisper's English normalizer (PyPI
``whisper-normalizer``, the protocol behind published Whisper WERs) and jiwer. RTF =
processing time / audio time (VAD included, file reading and model loading excluded).
Each engine runs in its own process, so its peak resident memory (``ru_maxrss``) is its own.

``--long``: the 22 recordings joined with 1 s pauses (a ~3-minute recording) through the
default engines en → es (Whisper tiny.en + Apertium): every recording must come back
transcribed and translated.

The Whisper models are installed into a temporary store from ../shared with
``edgewise pull NAME --from FOLDER --trust-on-first-use``, as on an offline device.

    python benchmarks/translation_asr.py [--beams 5] [--engines pocketsphinx-fast,whisper-tiny-en] [--long] [--json]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("EDGEWISE_SHARED", REPO.parent / "shared"))
LJ = SHARED / "data" / "speech" / "ljspeech"
ENGINES = {
    "pocketsphinx-fast": {"asr": "pocketsphinx", "asr_preset": "fast"},
    "pocketsphinx-accurate": {"asr": "pocketsphinx", "asr_preset": "accurate"},
    "whisper-tiny-en": {"asr": "whisper-onnx", "asr_model": "whisper-tiny-en"},
    "whisper-base": {"asr": "whisper-onnx", "asr_model": "whisper-base"},
}
MODELS = {"whisper-tiny-en": "whisper-tiny.en", "whisper-base": "whisper-base"}


def rows() -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in csv.reader((LJ / "transcripts.tsv").open(encoding="utf-8"), delimiter="\t")
            if r and r[0] != "id"]


def provision(home: Path) -> None:
    import contextlib
    import io
    import logging

    from sdk.cli.main import main as cli

    logging.getLogger("edgewise").setLevel(logging.ERROR)
    for name, folder in MODELS.items():
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli(["pull", name, "--from", str(SHARED / "models" / folder), "--trust-on-first-use",
                        "--cache-dir", str(home), "--json"])
        if code != 0:
            raise SystemExit(f"could not install {name} from {SHARED / 'models' / folder}")


def run_engine(label: str, beams: int) -> dict:
    """One engine over the 22 files (in this process)."""
    import logging

    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    from apps.mobile_translation.engines import EngineConfig, SpeechStack
    from apps.mobile_translation.filemode import translate_file
    from apps.mobile_translation.vad import SileroVAD
    from sdk.bench import peak_memory_bytes

    logging.getLogger("edgewise").setLevel(logging.ERROR)
    norm = EnglishTextNormalizer()
    t0 = time.perf_counter()
    eng = SpeechStack(EngineConfig(src="en", tgt="en", num_beams=beams, **ENGINES[label]))
    vad = SileroVAD()
    load_s = time.perf_counter() - t0
    refs, hyps, audio_s, proc_s, cpu_s = [], [], 0.0, 0.0, 0.0
    with tempfile.TemporaryDirectory() as out:
        for rid, text in rows():
            c0 = time.process_time()
            res = translate_file(LJ / f"{rid}.wav", out, eng, vad=vad)
            cpu_s += time.process_time() - c0
            refs.append(norm(text))
            hyps.append(norm(res.transcript))
            audio_s += res.audio_s
            proc_s += res.timings["total_s"]
    eng.close()
    vad.close()
    worst = sorted(((jiwer.wer(r, h), r, h) for r, h in zip(refs, hyps, strict=True)), reverse=True)[:2]
    return {"engine": label, "beams": beams if label.startswith("whisper") else None, "files": len(refs),
            "wer": round(jiwer.wer(refs, hyps), 4), "rtf": round(proc_s / audio_s, 3),
            "cpu_rtf": round(cpu_s / audio_s, 3), "audio_s": round(audio_s, 1), "load_s": round(load_s, 2),
            "peak_rss_mib": round((peak_memory_bytes() or 0) / 2**20, 1),
            "worst": [{"wer": round(w, 3), "ref": r, "hyp": h} for w, r, h in worst]}


def run_long(beams: int) -> dict:
    """The 22 recordings as one ~3-minute file, default engines en -> es."""
    import numpy as np

    from apps.mobile_translation.audio_io import read_audio_16k, write_audio
    from apps.mobile_translation.engines import EngineConfig, SpeechStack
    from apps.mobile_translation.filemode import translate_file
    from sdk.bench import peak_memory_bytes

    pieces, spans, pos = [], [], 0
    for rid, _ in rows():
        a, _ = read_audio_16k(LJ / f"{rid}.wav")
        spans.append((pos / 16000, (pos + len(a)) / 16000))
        pieces += [a, np.zeros(16000, np.float32)]
        pos += len(a) + 16000
    with tempfile.TemporaryDirectory() as tmp:
        wav = write_audio(Path(tmp) / "long.wav", np.concatenate(pieces), 16000)
        with SpeechStack(EngineConfig(src="en", tgt="es", num_beams=beams)) as eng:
            res = translate_file(wav, Path(tmp) / "out", eng)
    covered = sum(any(u.start < b and u.end > a and u.text and u.translation for u in res.utterances)
                  for a, b in spans)
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    return {"audio_s": res.audio_s, "engines": res.engines, "recordings": len(spans),
            "recordings_transcribed_and_translated": covered, "segments": len(res.utterances),
            "wer": round(jiwer.wer(norm(" ".join(t for _, t in rows())), norm(res.transcript)), 4),
            "rtf": res.timings["rtf"], "timings": res.timings,
            "peak_rss_mib": round((peak_memory_bytes() or 0) / 2**20, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beams", type=int, default=5, help="Whisper beam width (file mode's default: 5)")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--long", action="store_true", help="also the ~3-minute recording, en -> es")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        res = run_long(args.beams) if args.child == "long" else run_engine(args.child, args.beams)
        print(json.dumps(res, ensure_ascii=False))
        return 0
    if not (LJ / "transcripts.tsv").is_file():
        print(f"LJ Speech recordings not found at {LJ} (set EDGEWISE_SHARED)", file=sys.stderr)
        return 4
    from sdk.runtime import discover_device

    dev = discover_device()
    isa = ",".join(k for k, v in dev.isa.items() if v)
    results = []
    with tempfile.TemporaryDirectory() as home:
        provision(Path(home))
        env = {**os.environ, "EDGEWISE_HOME": home, "PYTHONPATH": str(REPO)}
        todo = [e for e in args.engines.split(",") if e] + (["long"] if args.long else [])
        for label in todo:
            proc = subprocess.run([sys.executable, __file__, "--child", label, "--beams", str(args.beams)],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                results.append({"engine": label, "error": proc.stderr.strip()[-500:]})
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    summary = {"cpu": dev.cpu_model, "isa": isa, "logical_cores": dev.logical_cores, "results": results}
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    print(f"CPU {dev.cpu_model} ({dev.logical_cores} logical cores; ISA {isa})")
    print("speech recognition through translate file, 22 LJ Speech files, Whisper English normalizer:")
    for r in results:
        if "error" in r:
            print(f"  {r['engine']:24s} failed: {r['error']}")
        elif "recordings" in r:
            print(f"  3-minute recording ({r['audio_s']:.0f} s, {r['engines']}): "
                  f"{r['recordings_transcribed_and_translated']}/{r['recordings']} recordings transcribed and "
                  f"translated, {r['segments']} segments, WER {r['wer']:.3f}, "
                  f"RTF {r['rtf']:.3f}, peak RSS {r['peak_rss_mib']} MiB")
        else:
            beams = f" beam {r['beams']}" if r["beams"] else ""
            print(f"  {r['engine'] + beams:24s} WER {r['wer']:.4f}  RTF {r['rtf']:.3f} wall, {r['cpu_rtf']:.3f} CPU  "
                  f"load {r['load_s']} s  peak RSS {r['peak_rss_mib']} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
