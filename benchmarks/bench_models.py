"""benchmark_model on real models, one table: PP-OCRv4 det, silero VAD, YOLOX-nano.

    python benchmarks/bench_models.py [--iters 30] [--threads N]

PP-OCRv4 det and silero VAD ship with pip packages (rapidocr-onnxruntime, silero-vad);
YOLOX-nano is read from ../shared/models when present (skipped otherwise).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sdk.bench import benchmark_model  # noqa: E402
from sdk.package_files import package_file  # noqa: E402
from sdk.runtime import EngineOptions, SessionOptions, discover_device  # noqa: E402


def cases() -> list[tuple[str, Path | None, dict]]:
    shared = Path(os.environ.get("EDGEWISE_SHARED", REPO.parent / "shared"))
    vad_feeds = {"input": np.zeros((1, 576), np.float32),  # 512 samples + 64 of context (v5)
                 "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, dtype=np.int64)}
    yolox = shared / "models" / "yolox_nano_coco_416.onnx"
    return [
        ("PP-OCRv4 det 640x640", package_file("rapidocr_onnxruntime", "models", "ch_PP-OCRv4_det_infer.onnx"),
         {"input_shapes": {"x": [1, 3, 640, 640]}}),
        ("silero VAD v5 (32 ms chunk)", package_file("silero_vad", "data", "silero_vad.onnx"), {"feeds": vad_feeds}),
        ("YOLOX-nano 416x416", yolox if yolox.is_file() else None, {}),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    opts = EngineOptions(session=SessionOptions(intra_op_threads=args.threads))
    print(f"device: {discover_device().summary()}")
    rows = []
    for title, path, kw in cases():
        if path is None:
            print(f"skipped {title}: model not found")
            continue
        rep = benchmark_model(path, opts, iters=args.iters, warmup=args.warmup, progress=True, **kw)
        flops = "n/a" if rep.flops is None else f"{rep.flops / 1e9:.3f}"
        rows.append((title, f"{rep.latency.p50_ms:.2f}", f"{rep.latency.p90_ms:.2f}", f"{rep.latency.p99_ms:.2f}",
                     f"{rep.throughput_per_s:.1f}", f"{rep.size_bytes / 2**20:.2f}", f"{rep.params / 1e6:.3f}",
                     flops, "n/a" if rep.peak_rss_bytes is None else f"{rep.peak_rss_bytes / 2**20:.0f}",
                     f"{rep.energy.joules_per_inference * 1000:.2f} ({rep.energy.source})"))
    head = ("model", "p50 ms", "p90 ms", "p99 ms", "inf/s", "MiB", "Mparams", "GFLOPs", "peak RSS MiB", "mJ/inf")
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    for r in [head] + rows:
        cells = enumerate(zip(r, widths, strict=True))
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in cells))
    print(f"(iters={args.iters}, warmup={args.warmup}, threads={args.threads or 'onnxruntime default'}; "
          f"energy marked 'estimate' is CPU time x an assumed power per core, not a measurement)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
