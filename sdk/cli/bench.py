"""``edgewise bench MODEL|BUNDLE``: latency percentiles, throughput, memory, size, FLOPs, energy."""
from __future__ import annotations

import argparse

from sdk.cli._common import add_json_flag, emit, parse_shape_args, resolve_model_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="benchmark a model or bundle on this device",
                              description="Run a model on synthetic inputs and report latency "
                                          "(p50/p90/p99), throughput, peak memory, size, params, "
                                          "FLOPs and energy per inference (RAPL or a labelled estimate).")
    p.add_argument("model", metavar="MODEL|BUNDLE", help="an .onnx file, a bundle folder or a .ewb archive")
    p.add_argument("--iters", type=int, default=100, help="timed runs (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--providers", default="cpu",
                   help="comma-separated presets or provider names in preference order (default cpu)")
    p.add_argument("--no-fallback", action="store_true", help="fail instead of falling back to CPU")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: onnxruntime decides)")
    p.add_argument("--shape", action="append", metavar="NAME=D1,D2,..",
                   help="input shape for a dynamic input (repeatable); default: batch 1, images 640x640")
    p.add_argument("--inputs", metavar="NPZ", default=None,
                   help="real inputs: an .npz with one array per input name (instead of synthetic ones)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=run)


def _load_feeds(path: str) -> dict:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:  # never unpickle user files
            return {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"--inputs file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"--inputs expects an .npz of arrays by input name, could not read {path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from sdk.bench import benchmark_model
    from sdk.runtime import EngineOptions, SessionOptions

    if args.iters < 1 or args.warmup < 0:
        raise ValueError(f"--iters must be >= 1 and --warmup >= 0, got {args.iters} and {args.warmup}")
    if args.threads is not None and args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    path, bundle = resolve_model_arg(args.model)
    opts = EngineOptions(providers=args.providers, fallback=not args.no_fallback,
                         session=SessionOptions(intra_op_threads=args.threads))
    feeds = _load_feeds(args.inputs) if args.inputs else None
    report = benchmark_model(bundle if bundle is not None else path, opts, iters=args.iters,
                             warmup=args.warmup, progress=not args.no_progress,
                             input_shapes=parse_shape_args(args.shape) or None, feeds=feeds)
    emit(args, report, report.table())
    return 0
