"""Batch triage throughput: `edgewise batch medical` on Ray at 1 and 2 workers vs single-process
`edgewise medical triage`, on the same 600+ chest X-ray PNGs, in one run.

    python benchmarks/batch_throughput.py [--n 624] [--workers 1 2] [--rounds 2]

The PNGs are written to a temporary folder from ../shared/data/medical/pneumoniamnist_28.npz
(validation then training images); skipped when the file is absent. Both sides skip heatmaps
(batch rows carry none). Ray is started once, with 2 CPUs, before the timed runs; its start-up
is reported apart. A batch run's time includes starting its actors (one model load each).
The runs are interleaved over ``--rounds`` rounds, each into a fresh folder, and the best
(shortest) time of each is kept: the machine is shared, so the best is the least disturbed.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)  # Ray workers

NPZ = Path(os.environ.get("EDGEWISE_SHARED", REPO.parent / "shared")) / "data/medical/pneumoniamnist_28.npz"

NOTE = """\
Expected scaling on a cluster: each worker is an independent actor holding one model, so the
steady rate grows with the number of worker CPUs until something shared saturates. What limits it:
- per-task overhead: Ray Data moves items and rows in batches (default 16 images per call); with
  ~1-2 ms of compute per 28x28 image, the per-batch scheduling and Arrow conversion is a visible
  share, so larger --batch-size helps small images; full-size DICOMs (tens of ms each) hide it;
- model load per actor: every worker verifies the bundle and builds an onnxruntime session once
  (plus importing the app), a fixed cost of seconds per worker, paid again on every run; it is
  the difference between the end-to-end and the steady rates below and dominates short jobs;
- I/O: every worker reads its files from shared storage, and the driver lists SRC and (on reruns)
  stats every file and hashes the changed ones; for an archive of large DICOMs on network storage
  the filesystem, not the CPUs, sets the ceiling;
- the driver: results stream back to one process that writes Parquet parts; rows are small
  (~1 KB), so this is far from a limit at thousands of items/s, but it is one machine.
On this 2-core machine the single-process triage already uses one core; 2 workers can at best
double that, and they share the cores with the driver and Ray's own processes."""


def _isa() -> str:
    from sdk.runtime import discover_device

    d = discover_device()
    flags = [k for k, v in d.isa.items() if v]
    return f"{d.cpu_model} ({d.physical_cores} physical / {d.logical_cores} logical cores), ISA: {', '.join(flags)}"


def make_pngs(root: Path, n: int) -> int:
    import cv2
    import numpy as np

    with np.load(NPZ) as d:
        imgs = np.concatenate([d["val_images"], d["train_images"]])[:n]
    for i, img in enumerate(imgs):
        cv2.imwrite(str(root / f"cxr_{i:05d}.png"), img)
    return len(imgs)


def run_triage(src: Path, out: Path) -> tuple[float, dict]:
    import json

    from sdk.cli.main import main

    buf = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        rc = main(["medical", "triage", str(src), "--out", str(out), "--no-heatmaps", "--include-identifiers",
                   "--json"])
    dt = time.perf_counter() - t
    if rc != 0:
        raise SystemExit(f"medical triage failed with exit code {rc}")
    return dt, {str(Path(s["source"]).absolute()): s.get("probability") for s in json.loads(buf.getvalue())}


def run_batch(spec, src: Path, out: Path, workers: int) -> tuple[float, float, dict, int]:
    """Seconds end to end, mean worker milliseconds per item (hash + process), probabilities, rows."""
    import pyarrow.parquet as pq

    from sdk.batch import run_job

    t = time.perf_counter()
    s = run_job(spec, src, out, workers=workers, progress=False)
    dt = time.perf_counter() - t
    rows = pq.read_table(s.results, columns=["source", "probability", "hash_ms", "process_ms"]).to_pylist()
    ms = sum(r["hash_ms"] + r["process_ms"] for r in rows) / max(1, len(rows))
    return dt, ms, {r["source"]: r["probability"] for r in rows}, s.processed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=624, help="images (default 624: 524 val + 100 train)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best time of each run is kept")
    args = ap.parse_args()
    if not NPZ.is_file():
        print(f"skipped: {NPZ} not found (set EDGEWISE_SHARED)")
        return 0
    try:
        import ray
    except ImportError:
        print("skipped: ray is not installed (pip install 'edgewise[cluster]')")
        return 0
    from apps.medical_imaging.batch import medical_spec

    print(f"CPU: {_isa()}")
    with tempfile.TemporaryDirectory(prefix="edgewise-batch-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "src").mkdir()
        n = make_pngs(tmp / "src", args.n)
        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20, log_to_driver=False,
                 logging_level="WARNING")
        t_ray = time.perf_counter() - t
        t_single, best = float("inf"), {}
        try:
            spec = medical_spec()
            for r in range(args.rounds):
                dt, ref = run_triage(tmp / "src", tmp / f"triage_{r}")
                t_single = min(t_single, dt)
                for w in args.workers:
                    res = run_batch(spec, tmp / "src", tmp / f"batch_w{w}_{r}", w)
                    if w not in best or res[0] < best[w][0]:
                        best[w] = res
        finally:
            ray.shutdown()
        results = [(w, *best[w]) for w in args.workers]
    print(f"\n{n} PNGs (PneumoniaMNIST 28x28), best of {args.rounds} interleaved rounds; "
          f"Ray start-up {t_ray:.1f} s (not counted below)\n")
    print(f"{'run':30s} {'seconds':>8s} {'items/s':>8s} {'vs triage':>9s} {'worker ms/item':>15s} "
          f"{'compute-bound items/s':>22s} {'max |dp|':>9s}")
    print(f"{'medical triage (1 process)':30s} {t_single:8.2f} {n / t_single:8.1f} {1.0:8.2f}x")
    for w, dt, ms, probs, done in results:
        diffs = [abs(probs[k] - v) for k, v in ref.items() if v is not None and probs.get(k) is not None]
        same = sum((probs.get(k) is None) == (v is None) for k, v in ref.items()) == len(ref) == done
        dp = f"{max(diffs):.1e}" if diffs else "n/a"
        print(f"{f'batch medical --workers {w}':30s} {dt:8.2f} {n / dt:8.1f} {n / dt / (n / t_single):8.2f}x "
              f"{ms:15.2f} {w * 1000 / ms:22.0f} {dp:>9s}{'' if same else '  (ROWS DIFFER)'}")
    print("\nitems/s: end to end (listing, actor start-up with one model load each, all rows written).")
    print("worker ms/item: time inside the workers per item (hash + triage); compute-bound items/s =")
    print("workers x 1000 / that: the rate with no start-up, scheduling or transfer cost at all.")
    print("max |dp|: largest probability difference from `medical triage` over the same files.\n")
    print(NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
