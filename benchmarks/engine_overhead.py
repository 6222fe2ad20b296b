"""Engine overhead over a bare ``InferenceSession.run``, measured side by side.

All variants call the *same* onnxruntime session (``Engine.session``), so the difference is
only the Engine's work: input validation, output packing and latency recording. Calls are
interleaved in rounds (A, B, C, then B, C, A, ...) so machine noise hits every variant alike.

    python benchmarks/engine_overhead.py [--rounds 1500] [--per-round 1] [--threads 1] [--skip-ppocr]

Target: Engine.run overhead under 5 % at p50 for a ~1 ms model.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdk.runtime import Engine, EngineOptions, SessionOptions  # noqa: E402


def build_mlp(width: int, depth: int = 4, seed: int = 0) -> onnx.ModelProto:
    """x [1, 256] -> depth x (MatMul + Add + Relu) with hidden ``width`` -> [1, 256]."""
    rng = np.random.default_rng(seed)
    dims = [256] + [width] * (depth - 1) + [256]
    nodes, inits, prev = [], [], "x"
    for i in range(depth):
        w = (rng.standard_normal((dims[i], dims[i + 1])) / np.sqrt(dims[i])).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array(np.zeros(dims[i + 1], np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
                  helper.make_node("Relu", [f"a{i}"], [f"h{i}"])]
        prev = f"h{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def interleaved(variants: dict, rounds: int, per_round: int) -> dict[str, np.ndarray]:
    """-> {variant: array [rounds, per_round] of ms}."""
    names = list(variants)
    times = {n: np.zeros((rounds, per_round)) for n in names}
    clock = time.perf_counter_ns
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate who goes first
        for n in order:
            fn, row = variants[n], times[n][r]
            for i in range(per_round):
                t0 = clock()
                fn()
                row[i] = (clock() - t0) / 1e6
    return times


def engine_own_cost_us(eng: Engine, x: np.ndarray, number: int = 20000) -> dict[str, float]:
    """Per-call cost of the Engine's Python work alone: the session call replaced by a no-op."""
    import timeit

    name = eng.inputs[0].name
    feed, out = {name: x}, [x]
    real = eng._run
    eng._run = lambda names, feeds, *a: out
    try:
        cost = {}
        for label, fn in (("Engine.run(dict)", lambda: eng.run(feed)), ("Engine.run_list", lambda: eng.run_list([x]))):
            cost[label] = min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6
    finally:
        eng._run = real
    return cost


def compare(title: str, eng: Engine, x: np.ndarray, rounds: int, per_round: int) -> dict[str, float]:
    sess = eng.session
    name = eng.inputs[0].name
    feed = {name: x}
    out_names = [o.name for o in eng.outputs]
    variants = {
        "InferenceSession.run": lambda: sess.run(out_names, feed),
        "Engine.run(dict)": lambda: eng.run(feed),
        "Engine.run_list": lambda: eng.run_list([x]),
    }
    for fn in variants.values():  # warm every path
        for _ in range(3):
            fn()
    t = interleaved(variants, rounds, per_round)
    bare = t["InferenceSession.run"]
    base = np.percentile(bare, 50)
    own = engine_own_cost_us(eng, x)
    print(f"\n{title}: {rounds} rounds x {per_round} call(s) per variant, interleaved")
    print(f"  {'variant':<22} {'p50 ms':>9} {'p90 ms':>9} {'overhead @p50':>14} {'own cost':>10}")
    result = {}
    for n, v in t.items():
        p50, p90 = np.percentile(v, [50, 90])
        ovh = (p50 - base) / base * 100
        result[n] = ovh
        cost = f"{own[n]:.2f} us" if n in own else "-"
        print(f"  {n:<22} {p50:>9.4f} {p90:>9.4f} {ovh:>+13.2f}% {cost:>10}")
    print(f"  own cost = Engine work per call with the session stubbed out "
          f"(= {100 * own['Engine.run(dict)'] / 1000 / base:.3g}% of this model's bare p50 for run(dict))")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1500)
    ap.add_argument("--per-round", type=int, default=1, help="calls of each variant per round")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for the session (default 1)")
    ap.add_argument("--skip-ppocr", action="store_true")
    args = ap.parse_args()
    opts = EngineOptions(session=SessionOptions(intra_op_threads=args.threads), warmup=3)

    # pick the MLP width whose bare latency (fastest of 30) is closest to 1 ms on this machine
    best = None
    for width in (512, 768, 1024, 1536):
        with Engine(build_mlp(width), opts) as eng:
            x = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32)
            sess, feed = eng.session, {"x": x}
            ts = []
            for _ in range(30):
                t0 = time.perf_counter_ns()
                sess.run(None, feed)
                ts.append(time.perf_counter_ns() - t0)
            ms = float(np.min(ts)) / 1e6
        if best is None or abs(np.log(ms)) < abs(np.log(best[1])):
            best = (width, ms)
    width = best[0]
    with Engine(build_mlp(width), opts) as eng:
        x = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32)
        res = compare(f"MLP 256-{width}x3-256 (~1 ms model; threads={args.threads})", eng, x,
                      args.rounds, args.per_round)
    verdict = "PASS" if res["Engine.run(dict)"] < 5.0 else "ABOVE TARGET (on a loaded machine compare 'own cost')"
    print(f"  target < 5% at p50 for Engine.run: {verdict}")

    if not args.skip_ppocr:
        from sdk.demo import ppocr_det_model_path

        try:
            det = ppocr_det_model_path()
        except Exception as exc:
            print(f"\nPP-OCRv4 det skipped: {exc}")
            return 0
        with Engine(det, opts.model_copy(update={"warmup": 0})) as eng:
            x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
            compare(f"PP-OCRv4 det 1x3x640x640 (threads={args.threads})", eng, x, max(4, args.rounds // 150), 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
