"""Where Whisper's final decode in live mode spends its time: features, encoder, decoder.

Whisper tiny.en INT8 (../shared/models/whisper-tiny.en) decodes the first 3.5 s of some LJ
Speech recordings (a live utterance's length) as the live loop's final decode does:
greedy, timestamps, temperatures (0, 0.4). The decoder runs twice, as shipped (the logits'
weight dequantized at every step) and with ``asr/int8_matmul.py``'s rewrite (the live
default); the text must be the same. Times are medians over the clips, with the ISA and the
load average.

    python benchmarks/translation_live_asr.py [--clips 6] [--json]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("EDGEWISE_SHARED", REPO.parent / "shared"))
LJ = SHARED / "data" / "speech" / "ljspeech"


def profile(rec, clips) -> dict:
    final = replace(rec.options, temperatures=(0.0, 0.4), best_of=1)
    rows = []
    for audio in clips:
        t0 = time.perf_counter()
        feats = rec.features(audio)
        t1 = time.perf_counter()
        enc = rec.encoder.run_list({"input_features": feats})[0]
        t2 = time.perf_counter()
        prompt, sot = rec._prompt([], True)
        res = rec.window.decode_with_fallback(enc, prompt, sot, final)
        t3 = time.perf_counter()
        rows.append((t1 - t0, t2 - t1, t3 - t2, len(res.tokens) + 1, res.text.strip()))
    med = lambda i: round(float(np.median([r[i] for r in rows])), 3)   # noqa: E731
    return {"features_s": med(0), "encoder_s": med(1), "decoder_s": med(2),
            "decoder_step_ms": round(1e3 * float(np.median([r[2] / r[3] for r in rows])), 1),
            "texts": [r[4] for r in rows]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from apps.mobile_translation.asr.whisper_onnx import WhisperOnnxRecognizer
    from apps.mobile_translation.audio_io import read_audio_16k
    from sdk.runtime import discover_device

    ids = [r[0] for r in csv.reader((LJ / "transcripts.tsv").open(encoding="utf-8"), delimiter="\t")
           if r and r[0] != "id"][:args.clips]
    clips = [read_audio_16k(LJ / f"{i}.wav")[0][:int(3.5 * 16000)] for i in ids]
    out = {}
    for name, fused in (("as_shipped", False), ("int8_matmul", True)):
        rec = WhisperOnnxRecognizer(SHARED / "models" / "whisper-tiny.en", num_beams=1, int8_matmul=fused)
        rec.warm_up()
        out[name] = profile(rec, clips)
        rec.close()
    dev = discover_device()
    res = {"cpu": dev.cpu_model, "isa": ",".join(k for k, v in dev.isa.items() if v), "clips": ids,
           "load_average_1min": round(os.getloadavg()[0], 2), **out,
           "same_text": out["as_shipped"]["texts"] == out["int8_matmul"]["texts"]}
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"CPU {res['cpu']} (ISA {res['isa']}); load average {res['load_average_1min']}; {len(ids)} clips of 3.5 s")
    for name in ("as_shipped", "int8_matmul"):
        r = out[name]
        print(f"  {name}: features {r['features_s']} s, encoder {r['encoder_s']} s, decoder {r['decoder_s']} s "
              f"({r['decoder_step_ms']} ms a step)")
    print(f"  same text both ways: {res['same_text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
