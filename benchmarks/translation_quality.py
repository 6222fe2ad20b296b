"""Quality and speed of each available engine of the translation app.

- WER (jiwer) of each recogniser on the real LJSpeech recordings in ../shared (resampled
  22,050 → 16,000 Hz with sdk.preprocess.resample; text lower-cased, punctuation removed);
- chrF and BLEU (sacrebleu) of each translator on the first N pairs of TICO-19 en→es;
- real-time factor (compute time / audio time) of recognition, and seconds per sentence
  of translation and synthesis.

    python benchmarks/translation_quality.py [--pairs 200] [--beams 1] [--json]

Engines that are not available here (a model not pulled, a package missing) are listed
with the reason instead of a number.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("EDGEWISE_SHARED", REPO.parent / "shared"))


def normalise(text: str) -> str:
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^\w\s']", " ", text)
    return " ".join(text.split())


def asr_benchmark(cfg_kw: dict, progress: bool) -> dict:
    import jiwer

    from apps.mobile_translation.audio_io import read_audio_16k
    from apps.mobile_translation.engines import EngineConfig, make_recognizer
    from sdk.progress import progress_bar

    d = SHARED / "data" / "speech" / "ljspeech"
    rows = list(csv.reader((d / "transcripts.tsv").open(encoding="utf-8"), delimiter="\t"))
    rows = [r for r in rows if r and r[0] != "id"]
    out = {}
    for label, name, extra in (("pocketsphinx (fast)", "pocketsphinx", {"asr_preset": "fast"}),
                               ("pocketsphinx (accurate)", "pocketsphinx", {"asr_preset": "accurate"}),
                               ("whisper-onnx", "whisper-onnx", {})):
        try:
            t0 = time.perf_counter()
            rec = make_recognizer(EngineConfig(asr=name, **cfg_kw, **extra))
            load_s = time.perf_counter() - t0
        except Exception as exc:
            out[label] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
            continue
        refs, hyps, audio_s, compute_s, cpu_s = [], [], 0.0, 0.0, 0.0
        for rid, text in progress_bar(rows, desc=f"ASR {name}", enabled=progress):
            audio, _ = read_audio_16k(d / f"{rid}.wav")
            c0 = time.process_time()
            tr = rec.transcribe(audio)
            cpu_s += time.process_time() - c0
            refs.append(normalise(text))
            hyps.append(normalise(tr.text))
            audio_s += tr.audio_s
            compute_s += tr.compute_s
        rec.close()
        out[label] = {"available": True, "files": len(rows), "wer": round(jiwer.wer(refs, hyps), 4),
                     "rtf": round(compute_s / audio_s, 3), "cpu_rtf": round(cpu_s / audio_s, 3),
                     "audio_s": round(audio_s, 1), "load_s": round(load_s, 2),
                     "example": {"ref": refs[0], "hyp": hyps[0]}}
    return out


def _cpu() -> float:
    """CPU seconds of this process and its finished children (Apertium runs as subprocesses)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def mt_benchmark(cfg_kw: dict, n_pairs: int, progress: bool) -> dict:
    import sacrebleu

    from apps.mobile_translation.engines import EngineConfig, make_translator
    from sdk.progress import progress_bar

    path = SHARED / "data" / "translation" / "tico19_en_es.tsv"
    rows = list(csv.reader(path.open(encoding="utf-8"), delimiter="\t", quoting=csv.QUOTE_NONE))[1:n_pairs + 1]
    src, ref = [r[1] for r in rows], [r[2] for r in rows]
    out = {}
    for name in ("apertium", "marian-onnx"):
        try:
            mt = make_translator(EngineConfig(mt=name, **cfg_kw))
        except Exception as exc:
            out[name] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
            continue
        t0 = time.perf_counter()
        c0 = _cpu()
        if hasattr(mt, "translate_batch"):  # apertium: one process for the whole set
            hyp = [t.text for t in mt.translate_batch(src)]
            batch_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            c1 = _cpu()
            for s in src[:20]:
                mt.translate(s)
            per_sentence = (time.perf_counter() - t1) / 20
            cpu_per_sentence = (_cpu() - c1) / 20
        else:
            hyp = [mt.translate(s).text for s in progress_bar(src, desc=f"MT {name}", enabled=progress)]
            batch_s = time.perf_counter() - t0
            per_sentence = batch_s / len(src)
            cpu_per_sentence = (_cpu() - c0) / len(src)
        mt.close()
        out[name] = {"available": True, "pairs": len(src),
                     "chrf": round(sacrebleu.corpus_chrf(hyp, [ref]).score, 2),
                     "bleu": round(sacrebleu.corpus_bleu(hyp, [ref]).score, 2),
                     "s_per_sentence": round(per_sentence, 4), "cpu_s_per_sentence": round(cpu_per_sentence, 4),
                     "total_s": round(batch_s, 2),
                     "example": {"src": src[1][:120], "hyp": hyp[1][:120], "ref": ref[1][:120]}}
    return out


def tts_benchmark(n: int = 20) -> dict:
    from apps.mobile_translation.tts.espeak_engine import EspeakSynthesizer

    path = SHARED / "data" / "translation" / "tico19_en_es.tsv"
    rows = list(csv.reader(path.open(encoding="utf-8"), delimiter="\t", quoting=csv.QUOTE_NONE))[1:n + 1]
    tts = EspeakSynthesizer("es")
    audio_s = compute_s = 0.0
    for r in rows:
        sp = tts.synthesize(r[2])
        audio_s += sp.duration_s
        compute_s += sp.seconds_to_synthesize
    return {"espeak": {"sentences": n, "rtf": round(compute_s / audio_s, 4), "audio_s": round(audio_s, 1)}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--beams", type=int, default=1)
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    if not (SHARED / "data").is_dir():
        print(f"shared data not found at {SHARED} (set EDGEWISE_SHARED)", file=sys.stderr)
        return 4
    progress = not args.no_progress   # sdk.progress shows bars on a terminal only
    kw = {"num_beams": args.beams, "quantized": args.int8}
    res = {"asr": asr_benchmark(kw, progress), "mt": mt_benchmark(kw, args.pairs, progress),
           "tts": tts_benchmark()}
    if args.json:
        print(json.dumps(res, indent=2, ensure_ascii=False))
        return 0
    print("speech recognition, LJSpeech (22 files)")
    for name, r in res["asr"].items():
        print(f"  {name:24s} " + (f"WER {r['wer']:.3f}  RTF {r['rtf']:.3f} wall, {r['cpu_rtf']:.3f} CPU  "
                                  f"(load {r['load_s']} s)"
                                  if r["available"] else f"not available: {r['reason']}"))
    print(f"translation, TICO-19 en->es (first {args.pairs} pairs)")
    for name, r in res["mt"].items():
        print(f"  {name:14s} " + (f"chrF {r['chrf']:.2f}  BLEU {r['bleu']:.2f}  "
                                  f"{r['s_per_sentence'] * 1000:.0f} ms/sentence wall, "
                                  f"{r['cpu_s_per_sentence'] * 1000:.0f} ms CPU"
                                  if r["available"] else f"not available: {r['reason']}"))
    for name, r in res["tts"].items():
        print(f"speech synthesis  {name:8s} RTF {r['rtf']:.4f} over {r['audio_s']} s of Spanish speech")
    return 0


if __name__ == "__main__":
    sys.exit(main())
