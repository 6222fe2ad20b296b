"""Medical triage: teacher vs student vs optimized student, measured side by side in one run
(batch 1, one onnxruntime thread), plus the per-study cost of the whole triage path.

    .venv/bin/python benchmarks/medical_triage.py [--iters 300]

Prints ratios, not absolute claims: the machine is shared and timings are noisy.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apps.medical_imaging.evaluate import DEFAULT_SET  # noqa: E402
from apps.medical_imaging.model import TriageModel  # noqa: E402
from sdk.bench import measure_latency  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=300)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    frame = rng.random((28, 28)).astype(np.float32)
    models = [(label, TriageModel(b, role=r)) for b, r, label in DEFAULT_SET]
    x = models[0][1].prepare([frame])
    # interleave rounds so that background load hits every model alike
    samples: dict[str, list[float]] = {label: [] for label, _ in models}
    for _ in range(5):
        for label, m in models:
            samples[label].append(measure_latency(lambda m=m: m.run(x), warmup=20, iters=args.iters // 5).p50_ms)
    base = np.median(samples[models[0][0]])
    print(f"{'model':22s} {'p50 ms':>8s} {'x teacher':>10s} {'bytes':>10s}")
    for label, m in models:
        ms = float(np.median(samples[label]))
        size = m.bundle.model_path(m.role).stat().st_size
        print(f"{label:22s} {ms:8.4f} {base / ms:10.2f} {size:10,d}")
    student = models[-1][1]
    from apps.medical_imaging.explain import occlusion_map

    occ = measure_latency(lambda: occlusion_map(student, frame), warmup=3, iters=30).p50_ms
    print(f"occlusion heatmap (121 occluded copies, one batch): {occ:.2f} ms = "
          f"{occ / np.median(samples[models[-1][0]]):.0f}x one inference")
    with tempfile.TemporaryDirectory() as d:
        import cv2

        from apps.medical_imaging.triage import Triage, scan

        src = Path(d) / "in"
        src.mkdir()
        for i in range(20):
            img = (np.clip(0.5 + 0.2 * rng.standard_normal((512, 512)), 0, 1) * 255).astype(np.uint8)
            cv2.imwrite(str(src / f"{i}.png"), img)
        with Triage(Path(d) / "out", heatmaps=False) as tri:
            t0 = time.perf_counter()
            tri.run(scan(src))
            dt = (time.perf_counter() - t0) * 1000 / 20
        print(f"full triage path per 512x512 PNG (read, hash, gate, model, OOD, audit, outputs): {dt:.1f} ms")
    for _, m in models:
        m.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
