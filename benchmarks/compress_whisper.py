"""The Whisper tiny.en encoder through ``sdk.compress.optimize``, side by side in one run.

Rows: every candidate of the transformer set (``sdk.compress.transformer_candidates``: dynamic
INT8 per tensor / per channel, static INT8 QDQ with per-channel weights, weight-only INT4
MatMulNBits at block sizes 32/64/128, size recipes), the shipped INT8 file as it is, and the
FP32 reference, all timed in the same interleaved rounds (speedup = median of the paired
per-round ratios, with its 90% interval).

The FP32 reference is rebuilt from the shipped INT8 file (``benchmarks/whisper_variants.py``,
``sdk.compress.dequantize``): float activations, weights on the shipped int8 grid. Dynamic INT8
per tensor re-quantizes those weights to exactly the shipped grid, so against this reference it
shows only the cost of quantizing activations (the weight rounding it shares with the shipped
file is invisible); static INT8, per-channel INT8 and INT4 re-quantize the weights for real.

Fidelity: cosine of ``last_hidden_state`` against the reference on log-mel windows of LJ Speech
files (``sdk.preprocess.whisper_input_features``), search files and held-out files apart; WER of
the full pipeline (the app's recogniser, greedy, the shipped INT8 decoder) on the held-out files.
``--decoder``: the merged decoder at FP32 (reference), shipped INT8 and INT4 (``translate
quantize --bits 4``, If branches included) with the reference encoder: WER, RTF, size.

Timings come from whatever machine runs it; on a shared one, rerun quiet with
``nice -n 0 .venv/bin/python benchmarks/compress_whisper.py --rounds 9`` when nothing else runs.

Run:  .venv/bin/python benchmarks/compress_whisper.py [--decoder] [--no-wer] [--only int4_b32 dynamic_int8]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from whisper_variants import rebuild_reference, transcripts, variant_folder, wer_rtf

from sdk.bench import compare_latency, model_file_size, speedup_interval
from sdk.compress import optimize
from sdk.compress.audio_calib import audio_evaluation, audio_files, split_files
from sdk.compress.candidates import candidate_set
from sdk.runtime import discover_device

SHARED = REPO.parent / "shared"
MODEL = SHARED / "models" / "whisper-tiny.en"
LJ = SHARED / "data" / "speech" / "ljspeech"


def shipped_row(ref: Path, shipped: Path, feeds: dict, ev, hev, rounds: int, iters: int) -> dict:
    """The shipped INT8 encoder, timed against the reference alone and scored by the same evaluators."""
    tm = compare_latency({"fp32": ref, "shipped_int8": shipped}, feeds, "cpu", rounds, iters)
    med, lo, hi = speedup_interval(tm.wall["fp32"], tm.wall["shipped_int8"])
    return {"name": "shipped_int8 (as shipped)", "latency_ms": tm.median("shipped_int8"), "speedup": med,
            "ci": (lo, hi), "size": model_file_size(shipped), "search": ev(shipped),
            "held": hev(shipped) if hev else None}


def encoder_rows(res, shipped: dict) -> list[dict]:
    rows = []
    for c in res.candidates:
        rows.append({"name": c.name, "latency_ms": c.latency_ms, "speedup": c.speedup, "ci": c.speedup_ci,
                     "size": c.size_bytes, "search": c.search_metric, "held": c.metric, "chosen": c.chosen,
                     "within_budget": c.within_budget, "error": c.error, "path": c.path})
    rows.append({**shipped, "path": MODEL / "onnx" / "encoder_model_quantized.onnx"})
    return rows


def add_wer(rows: list[dict], decoder: Path, held: list[Path], work: Path, beams: int) -> None:
    refs = transcripts(LJ)
    for r in rows:
        if r.get("path") is None:
            continue
        folder = variant_folder(MODEL, work, "enc_" + r["name"].split()[0], r["path"], decoder)
        r.update({"wer": wer_rtf(folder, held, refs, beams)["wer"]})


def decoder_rows(ref: dict[str, Path], held: list[Path], work: Path, beams: int) -> list[dict]:
    """Task B: the merged decoder at FP32, shipped INT8 and INT4 with the FP32 reference encoder."""
    import onnx

    from apps.mobile_translation.int8 import quantize_export
    from sdk.graphs import count_ops_deep

    refs = transcripts(LJ)
    shipped = MODEL / "onnx" / "decoder_model_merged_quantized.onnx"
    fp32 = variant_folder(MODEL, work, "dec_fp32", ref["encoder"], ref["decoder"])
    rows = [("fp32 (reference)", fp32, None, ref["decoder"]),
            ("shipped int8", variant_folder(MODEL, work, "dec_int8", ref["encoder"], shipped), None, shipped)]
    for bs, acc in ((32, 0), (32, 4), (128, 4)):
        d = variant_folder(MODEL, work, f"dec_int4_b{bs}_acc{acc}", ref["encoder"], ref["decoder"])
        out = quantize_export(d, bits=4, block_size=bs, accuracy_level=acc, force=True)
        dec = Path(next(v for k, v in out.items() if "decoder" in k))
        enc_int4 = d / "onnx" / "encoder_model_int4.onnx"
        enc_int4.unlink()          # keep the FP32 reference encoder: only the decoder differs
        enc_int4.symlink_to(ref["encoder"].resolve())
        rows.append((f"int4 b{bs} acc{acc}", d, "int4", dec))
    out = []
    for name, folder, q, dec in rows:
        m = wer_rtf(folder, held, refs, beams, quantized=q)
        ops = count_ops_deep(onnx.load(str(dec), load_external_data=False))
        out.append({"name": name, "size": model_file_size(dec), "matmulnbits": ops.get("MatMulNBits", 0),
                    "matmulinteger": ops.get("MatMulInteger", 0), "float_matmul": ops.get("MatMul", 0), **m})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--holdout", type=float, default=0.4, help="share of the LJ Speech files held out (default 0.4)")
    ap.add_argument("--max-drop", default="0.01", help="cosine budget for the choice (default 0.01 absolute)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds (default 5)")
    ap.add_argument("--iters", type=int, default=3, help="runs per model and round (default 3)")
    ap.add_argument("--beams", type=int, default=1, help="beam width of the WER pipeline (default 1, greedy)")
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME", help="only these candidates")
    ap.add_argument("--no-wer", action="store_true", help="skip the full-pipeline WER")
    ap.add_argument("--decoder", action="store_true", help="also the merged decoder at FP32 / INT8 / INT4 (issue 11)")
    ap.add_argument("--work", default=None, help="keep the models here (default: a temporary folder)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not (MODEL / "onnx" / "encoder_model_quantized.onnx").is_file() or not LJ.is_dir():
        raise SystemExit(f"needs {MODEL} and {LJ} (the shared data)")
    logging.basicConfig(level=logging.WARNING)
    dev = discover_device()
    with tempfile.TemporaryDirectory(prefix="edgewise-whisper-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        ref = rebuild_reference(MODEL, work)
        calib, ev, hev = audio_evaluation(ref["encoder"], [LJ], args.holdout)
        held = split_files(audio_files([LJ]), args.holdout)[1]
        cset = candidate_set(ref["encoder"], "cpu", dev)
        recipes = {k: v for k, v in cset.recipes.items() if not args.only or k in args.only}
        res = optimize(ref["encoder"], calib, ev, max_drop=args.max_drop, candidates=recipes, holdout=hev,
                       sensitivity=False, bit_allocation=False, latency_rounds=args.rounds,
                       latency_iters=args.iters, energy=False, out_dir=work / "optimize", device=dev)
        feeds = calib.for_model(ref["encoder"], limit=1)[0]
        shipped = shipped_row(ref["encoder"], MODEL / "onnx" / "encoder_model_quantized.onnx", feeds, ev, hev,
                              args.rounds, args.iters)
        rows = encoder_rows(res, shipped)
        if not args.no_wer:
            add_wer(rows, MODEL / "onnx" / "decoder_model_merged_quantized.onnx", held, work, args.beams)
        dec = decoder_rows(ref, held, work, args.beams) if args.decoder else []
    report = {"cpu": dev.summary(), "isa_profile": cset.profile, "note": res.note,
              "data": res.evaluation, "skipped": cset.skipped,
              "encoder": [{k: (str(v) if isinstance(v, Path) else v) for k, v in r.items()} for r in rows],
              "decoder": dec}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"CPU: {dev.summary()} (candidate set for: {cset.profile})")
    print(f"search: {res.evaluation['search']['size']}; held-out: {(res.evaluation['holdout'] or {}).get('size')}")
    print(f"{'encoder variant':28} {'ms':>8} {'speedup (90% CI)':>20} {'MB':>6} {'cos search':>10} "
          f"{'cos held':>9} {'WER held':>8}")
    for r in rows:
        if r.get("error"):
            print(f"{r['name']:28} failed: {r['error'][:80]}")
            continue
        ci = f" ({r['ci'][0]:.2f}-{r['ci'][1]:.2f})" if r.get("ci") else ""
        sp = f"{r['speedup']:.2f}x{ci}" if r.get("speedup") else "1.00x"
        wer = f"{r['wer']:.4f}" if r.get("wer") is not None else "-"
        held_cos = f"{r['held']:.5f}" if r.get("held") is not None else "-"
        mark = " *" if r.get("chosen") else ""
        print(f"{r['name'] + mark:28} {r['latency_ms']:8.1f} {sp:>20} {r['size'] / 1e6:6.1f} {r['search']:10.5f} "
              f"{held_cos:>9} {wer:>8}")
    for s in cset.skipped:
        print(f"skipped {s['name']}: {s['reason']}")
    print(res.note)
    if dec:
        print(f"\n{'merged decoder (FP32 ref encoder)':34} {'MB':>6} {'NBits':>5} {'MMInt':>5} {'MatMul':>6} "
              f"{'WER held':>8} {'RTF':>6}")
        for r in dec:
            print(f"{r['name']:34} {r['size'] / 1e6:6.1f} {r['matmulnbits']:5d} {r['matmulinteger']:5d} "
                  f"{r['float_matmul']:6d} {r['wer']:8.4f} {r['rtf']:6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
