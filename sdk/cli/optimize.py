"""``edgewise optimize MODEL|BUNDLE``: accuracy-budgeted compression into a new bundle.

The search (``sdk.compress.optimize``) tries candidate recipes, measures latency on the
target, the metric and the size, and chooses; the chosen model is written as a bundle with
the recipe (``provenance.recipe`` + ``recipe.yaml``), the metrics, the parent model's
SHA-256 and the report (``report.json``, ``report.md``, ``pareto.png``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sdk.cli._common import add_json_flag, emit, fmt_bytes, resolve_model_arg, table

EVALS = ("fidelity", "top1", "auc", "detection")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "optimize", help="compress a model within an accuracy budget (quantize, prune) into a bundle",
        description="Try quantization/pruning recipes, measure latency on the target, the metric and the size, "
                    "and write the fastest candidate within the budget (or the smallest with --size-only) as a "
                    "bundle with its recipe, metrics and report. Never returns a model slower than the input "
                    "unless --size-only is given; says so when nothing beats FP32 here.")
    p.add_argument("model", metavar="MODEL|BUNDLE", help="an .onnx file, a bundle folder or a .ewb archive")
    p.add_argument("--calib", required=True, metavar="DATA",
                   help="calibration data: a folder of images (preprocessed with the bundle's preprocessing, or "
                        "letterboxed to the model's input size), a .npz (one array per input, samples on axis 0), "
                        "a .npy or a folder of .npy files")
    p.add_argument("--eval", choices=EVALS, default="fidelity",
                   help="metric: fidelity (cosine vs FP32 outputs, no labels), top1/auc (need --labels), "
                        "detection (YOLOX-style F1 vs FP32 detections at IoU 0.5)")
    p.add_argument("--labels", metavar="FILE.npz", help="for top1/auc: a .npz with arrays X (inputs) and y (labels)")
    p.add_argument("--max-drop", default="1%",
                   help="accuracy budget: '1%%' = relative to the FP32 metric, '0.01' = absolute (default 1%%)")
    p.add_argument("--target", default="cpu", help="execution provider preset to measure latency on (default cpu)")
    p.add_argument("--out", required=True, metavar="DIR", help="bundle folder to write")
    p.add_argument("--size-only", action="store_true", help="choose the smallest model within the budget")
    p.add_argument("--recipe", metavar="FILE", help="try only this recipe (YAML/JSON) against FP32")
    p.add_argument("--limit", type=int, default=64, help="calibration samples used (default 64)")
    p.add_argument("--image-scale", type=float, default=1.0,
                   help="image folders without a bundle: divide pixel values by this (default 1: 0..255)")
    p.add_argument("--no-sensitivity", action="store_true", help="skip the per-node sensitivity analysis")
    p.add_argument("--no-bit-allocation", action="store_true",
                   help="skip choosing which weights can be stored at 4 bits (the weights_mixed_int4 candidate)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_json_flag(p)
    p.set_defaults(func=run)


def _image_preprocess(model_path: Path, scale: float):
    """Letterbox to the model's fixed NCHW input size, CHW float32, divided by ``scale``."""
    import onnx

    from sdk.preprocess import letterbox

    m = onnx.load(str(model_path), load_external_data=False)
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or not dims[2] or not dims[3]:
        raise ValueError(f"image calibration needs a fixed NCHW input size, got {dims} for "
                         f"{m.graph.input[0].name}; pass a .npz instead")

    def pre(img: np.ndarray) -> np.ndarray:
        out, _ = letterbox(img, (dims[2], dims[3]), pad_value=114)
        return np.ascontiguousarray(out.transpose(2, 0, 1)[None].astype(np.float32) / scale)

    return pre


def _calibration(args: argparse.Namespace, model_path: Path, bundle: Any):
    from sdk.compress import CalibrationData

    src = Path(args.calib)
    if not src.exists():
        raise FileNotFoundError(f"--calib: no such file or folder: {src}")
    if src.is_file() or any(src.glob("*.npy")):
        return CalibrationData.from_files(src, limit=args.limit)
    if bundle is not None and bundle.manifest.preprocess is not None:
        return CalibrationData.from_bundle(bundle, src, limit=args.limit)
    return CalibrationData.from_folder(src, _image_preprocess(model_path, args.image_scale), limit=args.limit)


def _evaluator(args: argparse.Namespace, model_path: Path, calib: Any):
    from sdk.compress import AUC, DetectionAgreement, OutputFidelity, Top1Accuracy, YoloxDecoder

    if args.eval in ("top1", "auc"):
        if not args.labels:
            raise ValueError(f"--eval {args.eval} needs --labels FILE.npz with arrays X and y")
        with np.load(args.labels, allow_pickle=False) as z:
            if not {"X", "y"} <= set(z.files):
                raise ValueError(f"{args.labels}: expected arrays 'X' and 'y', got {z.files}")
            X, y = z["X"], z["y"]
        return Top1Accuracy(X, y) if args.eval == "top1" else AUC(X, y)
    feeds = calib.for_model(model_path, limit=32)
    if args.eval == "detection":
        shape = next(iter(feeds[0].values())).shape
        return DetectionAgreement(model_path, feeds, YoloxDecoder((shape[2], shape[3])))
    return OutputFidelity(model_path, feeds, metric="cosine")


def run(args: argparse.Namespace) -> int:
    from sdk.bundle import Manifest, ModelEntry, Provenance, file_sha256, save_bundle
    from sdk.compress import Recipe, optimize

    from sdk.compress.graph_prep import load_model

    model_path, bundle = resolve_model_arg(args.model)
    load_model(model_path)  # a broken model fails here, named, before any work
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise ValueError(f"--out {out} exists and is not empty; pass --overwrite to replace it")
    calib = _calibration(args, model_path, bundle)
    evaluator = _evaluator(args, model_path, calib)
    candidates = {"recipe": Recipe.from_file(args.recipe)} if args.recipe else None
    progress = not args.no_progress and sys.stderr.isatty()
    with tempfile.TemporaryDirectory(prefix="edgewise-optimize-") as tmp:
        res = optimize(model_path, calib, evaluator, max_drop=args.max_drop, target=args.target, out_dir=tmp,
                       size_only=args.size_only, candidates=candidates,
                       sensitivity=False if args.no_sensitivity else None,
                       bit_allocation=False if args.no_bit_allocation else None, progress=progress)
        chosen = res.chosen
        recipe = chosen.recipe or Recipe([])
        recipe_file = recipe.to_file(Path(tmp) / "recipe.yaml")
        metrics = {res.metric_name: float(chosen.metric), f"{res.metric_name}_fp32": float(res.baseline.metric),
                   "latency_ms": float(chosen.latency_ms), "latency_ms_fp32": float(res.baseline.latency_ms),
                   "speedup": float(chosen.speedup), "size_ratio": float(chosen.size_ratio)}
        old = bundle.manifest if bundle is not None else None
        files: dict[str, Any] = {"model.onnx": chosen.path, "recipe.yaml": recipe_file,
                                 "report.json": Path(tmp) / "report.json", "report.md": Path(tmp) / "report.md",
                                 "pareto.png": Path(tmp) / "pareto.png"}
        if bundle is not None:
            model_rel = old.models["model"].file
            for rel in old.files:
                if rel != model_rel and rel not in files:
                    files[rel] = bundle.file_path(rel)
        manifest = Manifest(
            name=(old.name + "-optimized") if old else model_path.stem + "-optimized",
            version=old.version if old else "1.0.0",
            task=old.task if old else {"detection": "detection", "top1": "classification",
                                       "auc": "classification"}.get(args.eval, "generic"),
            description=f"{'' if not old else old.description + ' '}Optimized by `edgewise optimize` "
                        f"({chosen.name}; {res.note})".strip(),
            models={"model": ModelEntry(file="model.onnx")},
            labels=old.labels if old else None, preprocess=old.preprocess if old else None,
            metrics={**(dict(old.metrics) if old else {}), **metrics},
            provenance=Provenance(**{**(old.provenance.model_dump() if old else {}),
                                     "recipe": json.dumps(recipe.to_list()),
                                     "parent_sha256": file_sha256(model_path),
                                     "created_by": "edgewise optimize"}),
            extra={**(dict(old.extra) if old else {}), "optimize": {"chosen": chosen.name, "note": res.note,
                                                                  "target": args.target,
                                                                  "budget": str(res.budget)}},
        )
        b = save_bundle(out, manifest, files, overwrite=args.overwrite)
    rows = [["", "candidate", "latency ms", "speedup", "size", "metric", "delta", "note"]]
    for c in res.candidates:
        rows.append(["*" if c.chosen else "", c.name, _f(c.latency_ms, ".2f"), _f(c.speedup, ".2f", "x"),
                     fmt_bytes(c.size_bytes) if c.size_bytes else "-", _f(c.metric, ".4f"), _f(c.delta, "+.4f"),
                     "over budget" if c.metric is not None and not c.within_budget else (c.error or "")[:60]])
    human = f"{table(rows)}\n\n{res.note}\nbundle written to {b.path}"
    emit(args, {"bundle": str(b.path), **res.to_dict()}, human)
    return 0


def _f(v: Any, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"
