"""INT8 with quantized activations on YOLOX-nano, side by side in one run, on this CPU.

Rows (all timed in the same interleaved rounds against the 416x416 FP32 model; speedup is the
median paired per-round ratio with its 90% bootstrap interval):

  fp32_256x416        input fixed to the frames' 16:9 aspect ratio + ORT graph optimization
  ort_static_default  onnxruntime quantize_static with no options (QDQ, per-tensor, MinMax)
  ort_static_pct_pc   QDQ, per-channel, Percentile 99.99 (the best plain calibration found so far)
  int8_mse            sdk.compress quantize_int8 with ranges="mse": histogram-MSE ranges, GPTQ weights,
                      bias correction
  int8_reconstructed  quantize_int8 as it is by default: the same, with the grid of a tensor only a SiLU
                      reads chosen for the error after the SiLU (ranges="mse_silu")
  int8_silu_float     the same, Sigmoid and Mul left in float between the QLinearConvs and written as
                      one com.microsoft.QuickGelu (sdk.compress.qdq_silu; the speed side)
  int8_adaround       (--adaround) + AdaRound block reconstruction (learned rounding, input scales, biases)
  int8_equalized      (--adaround) + cross-layer equalization before quantizing
  relu_int8           (--relu) the ReLU student (sdk.compress.relu_distill: SiLU swapped for ReLU, distilled
                      onto the FP32 model on the calibration frames), then quantize_int8; trained once
  *_256x416           the same INT8 recipes at the 16:9 input

Detection F1 against FP32 (IoU 0.5) is given on the calibration-side frames and on held-out
frames (whole files never used for calibration). A per-op profile of the INT8 model shows
where its time goes: on CPUs where onnxruntime runs SiLU (x * sigmoid(x)) as QLinearSigmoid +
QLinearMul, those two cost more than the float graph's fused QuickGelu, and eat the integer
convolutions' gain.

Run:  .venv/bin/python benchmarks/int8_yolox.py [--rounds 9] [--adaround] [--json]
(--adaround adds the reconstruction rows: about 20 minutes each on a busy 2-core machine;
 --relu adds the ReLU-student rows: one training of --relu-steps steps, about 1-2 s a step on 2 cores)
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import onnx  # noqa: E402
from yolox_frames import cli_split, frames_line  # noqa: E402  (benchmarks/, the script's folder)

from sdk.bench import compare_latency, model_file_size, speedup_interval  # noqa: E402
from sdk.compress import Recipe, Workspace  # noqa: E402
from sdk.compress.frames import FrameCalibration  # noqa: E402
from sdk.compress.qdq_silu import fuse_silu  # noqa: E402
from sdk.runtime import discover_device  # noqa: E402


def op_profile(path: Path, feeds: dict, runs: int = 20) -> dict[str, float]:
    """ms per run spent in each op type (onnxruntime's profiler, one thread)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "prof")
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        x = {sess.get_inputs()[0].name: next(iter(feeds.values()))}
        for _ in range(runs):
            sess.run(None, x)
        events = json.loads(Path(sess.end_profiling()).read_text())
    agg: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            agg[e["args"]["op_name"]] += e["dur"]
    return {op: round(us / runs / 1000, 3) for op, us in agg.most_common(8)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--adaround", action="store_true", help="add the AdaRound and equalization rows (slow)")
    ap.add_argument("--relu", action="store_true", help="add the ReLU-student rows (trains once; slow)")
    ap.add_argument("--relu-steps", type=int, default=600, help="training steps of the ReLU student")
    args = ap.parse_args()
    split = cli_split()
    if split is None:
        return 4
    model, search, held, ev_s, ev_h = split
    cal = FrameCalibration(search, (416, 416))
    fix = {"pass": "fix_input_shape", "shape": [1, 3, 256, 416]}
    pct = {"pass": "quantize_static", "format": "QDQ", "per_channel": True, "calibrate_method": "Percentile",
           "percentile": 99.99}
    q = {"pass": "quantize_int8"}
    int8 = {"int8_mse": {**q, "ranges": "mse"}, "int8_reconstructed": q,
            "int8_silu_float": {**q, "op_types_to_keep_float": ["Sigmoid", "Mul"]}}
    if args.adaround:
        int8.update({"int8_adaround": {**q, "reconstruct": "adaround", "reconstruct_iters": 100},
                     "int8_equalized": {**q, "equalize": True}})
    recipes = {"fp32_256x416": [fix, {"pass": "optimize_graph", "level": "extended"}],
               "ort_static_default": [{"pass": "quantize_static", "preprocess": False}],
               "ort_static_pct_pc": [pct], "ort_static_pct_pc_256x416": [fix, pct]}
    for name, step in int8.items():
        recipes[name] = [step]
        recipes[name + "_256x416"] = [fix, step]
    if args.relu:          # the 256x416 row first: the student is trained once, at the smaller input
        relu = {"pass": "relu_distill", "steps": args.relu_steps}
        recipes["relu_int8_256x416"] = [fix, relu, q]
        recipes["relu_int8"] = [relu, q]
    rows: dict[str, dict] = {"fp32": {"path": model}}
    ws = Workspace(cal)        # shared: the ReLU student is trained once for both of its rows
    with tempfile.TemporaryDirectory(prefix="edgewise-int8-") as tmp:
        for name, steps in recipes.items():
            p = Recipe(steps).apply(model, Path(tmp) / f"{name}.onnx", workspace=ws, work_dir=tmp).path
            if name.startswith("int8_silu_float"):       # + QuickGelu in place of the float Sigmoid/Mul pairs
                m = onnx.load(str(p))
                fuse_silu(m)
                p = Path(tmp) / f"{name}_quickgelu.onnx"
                onnx.save(m, str(p))
            rows[name] = {"path": p, "f1_search": ev_s(p), "f1_heldout": ev_h(p)}
            print(f"built {name}: F1 {rows[name]['f1_search']:.3f} / held-out {rows[name]['f1_heldout']:.3f}",
                  file=sys.stderr, flush=True)
        feeds = cal.for_model(model)[0]
        tm = compare_latency({k: r["path"] for k, r in rows.items()}, feeds, rounds=args.rounds, sessions=3)
        for k, r in rows.items():
            r["latency_ms"], r["cpu_ms"] = tm.median(k), tm.cpu_median(k)
            r["speedup"], lo, hi = speedup_interval(tm.wall["fp32"], tm.wall[k])
            r["speedup_ci"] = [lo, hi]
            r["size_ratio"] = model_file_size(model) / model_file_size(r["path"])
        prof_rows = ("fp32", "int8_reconstructed", "int8_silu_float") + (("relu_int8",) if args.relu else ())
        profiles = {k: op_profile(rows[k]["path"], feeds) for k in prof_rows}
    dev = discover_device()
    out = {"cpu": dev.summary(), "frames": {"search": len(search), "held_out": len(held),
           "detections_search": sum(len(d) for d in ev_s.reference),
           "detections_held_out": sum(len(d) for d in ev_h.reference)},
           "rows": {k: {kk: (str(v) if kk == "path" else v) for kk, v in r.items() if kk != "path"}
                    for k, r in rows.items()}, "op_profile_ms": profiles}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(frames_line(dev.summary(), {"search": len(search), "held-out": len(held)}, split))
    print(f"{'row':28s} {'ms':>7s} {'cpu ms':>7s} {'speedup (90% CI)':>20s} {'size':>6s} {'F1 search':>9s} "
          f"{'held-out':>9s}")
    for k, r in rows.items():
        ci = r["speedup_ci"]
        f1 = (f"{r['f1_search']:9.3f} {r['f1_heldout']:9.3f}" if "f1_search" in r else f"{'-':>9s} {'-':>9s}")
        print(f"{k:28s} {r['latency_ms']:7.2f} {r['cpu_ms']:7.2f} {r['speedup']:8.2f}x ({ci[0]:.2f}-{ci[1]:.2f}) "
              f"{r['size_ratio']:5.2f}x {f1}")
    for k, prof in profiles.items():
        print(f"op profile {k} (ms per run, 1 thread): " + ", ".join(f"{op} {ms}" for op, ms in prof.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
