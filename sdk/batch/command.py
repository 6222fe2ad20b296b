"""Command-line plumbing apps use to add ``edgewise batch <job>``: the shared arguments and
the run-and-report step. An app's ``batch`` module calls these from ``register_batch``."""
from __future__ import annotations

import argparse
import json
import sys

from sdk.batch.job import JobSpec


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """SRC, --out, --workers, --address, --batch-size, --json."""
    parser.add_argument("src",
                        help="folder (searched recursively), or a CSV/Parquet list with a 'path' column")
    parser.add_argument("--out", required=True, help="output folder: results.parquet and parts/ (the resume record)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker actors, one model each (default: as many as the Ray cluster's CPUs allow)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join: HEAD:6379, or auto on a cluster node "
                             "(default: start Ray on this machine)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="items per call of a worker (default: the job's, 16 for images, 1 for clips)")
    parser.add_argument("--json", action="store_true", help="print the run summary as JSON")


def run_from_args(spec: JobSpec, args: argparse.Namespace) -> int:
    """Run the job the parsed arguments describe and print its summary; returns the exit code."""
    from sdk.batch.runner import run_job

    s = run_job(spec, args.src, args.out, workers=args.workers, address=args.address,
                batch_size=args.batch_size, progress=True)
    if args.json:
        print(json.dumps(s.to_dict(), indent=2))
    elif s.processed == 0:
        print(f"batch {s.job}: {s.listed} items listed, {s.skipped} skipped (already done with the same content "
              f"and model): nothing to do")
    else:
        print(f"batch {s.job}: {s.listed} items listed, {s.skipped} skipped (already done), "
              f"{s.processed} processed ({s.errors} error rows) by {s.workers} workers "
              f"in {s.seconds:.1f} s ({s.items_per_s:.1f} items/s)")
    if not args.json and s.results:
        print(f"results: {s.results}")
    sys.stdout.flush()
    return 0
