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
from typing import TYPE_CHECKING, Any

import numpy as np

from sdk.cli._common import add_json_flag, emit, fmt_bytes, resolve_model_arg, table

if TYPE_CHECKING:
    from sdk.compress import Evaluator, OptimizeOptions

EVALS = ("fidelity", "top1", "auc", "detection")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "optimize", help="compress a model within an accuracy budget (quantize, prune) into a bundle",
        description="Try quantization/pruning recipes, measure latency on the target, the metric and the size, "
                    "and write the fastest candidate within the budget (or the smallest with --size-only) as a "
                    "bundle with its recipe, metrics and report. Never returns a model slower than the input "
                    "unless --size-only is given; says so when nothing beats FP32 here.")
    p.add_argument("model", metavar="MODEL|BUNDLE", help="an .onnx file, a bundle folder or a .ewb archive")
    p.add_argument("--calib", required=True, metavar="DATA", nargs="+",
                   help="calibration and evaluation data: image files, videos (frames sampled, see --video-frames), "
                        "folders of them (preprocessed with the bundle's preprocessing, or letterboxed to the "
                        "model's input size), a .npz (one array per input, samples on axis 0), a .npy or a folder "
                        "of .npy files; or audio files (.wav, .flac) or folders of them for a speech encoder "
                        "(Whisper's log-mel input_features, one per 30 s window; files held out whole)")
    p.add_argument("--video-frames", type=int, default=24, metavar="N",
                   help="frames sampled evenly from each video given to --calib (default 24)")
    p.add_argument("--holdout", type=float, default=0.4, metavar="FRACTION",
                   help="share of the data held out: the search calibrates, allocates bits and runs its "
                        "sensitivity analysis on the rest, and judges every candidate against the budget on the "
                        "held-out part (default 0.4; whole files are held out when there are 4 or more, else "
                        "the last frames of each video)")
    p.add_argument("--no-holdout", action="store_true",
                   help="calibrate and judge on the same data (the report then has one metric)")
    p.add_argument("--input-shape", action="append", default=[], metavar="1x3xHxW",
                   help="also try the model with its input fixed to this shape (repeatable); for --eval detection "
                        "on images or videos, the shape that fits the frames' aspect ratio is tried automatically")
    p.add_argument("--no-auto-shapes", action="store_true",
                   help="do not derive rectangular input shapes from the frames' aspect ratio")
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
    p.add_argument("--preprocess", metavar="SPEC",
                   help="images and video frames go through this preprocessing (a PreprocessSpec: a .json file "
                        "or inline JSON, e.g. resize, normalize with mean/std, to_layout NCHW) instead of a plain "
                        "letterbox to the model's input size; for models without a fixed input size or with "
                        "normalised inputs. The written bundle keeps it as its preprocessing")
    p.add_argument("--no-sensitivity", action="store_true", help="skip the per-node sensitivity analysis")
    p.add_argument("--no-bit-allocation", action="store_true",
                   help="skip choosing which weights can be stored at 4 bits (the weights_mixed_int4 candidate)")
    p.add_argument("--relu-distill", action="store_true",
                   help="also try INT8 of a ReLU student distilled from the (SiLU) model on the calibration data: "
                        "onnxruntime runs INT8 SiLU slowly on CPU, INT8 ReLU fast (needs the train extra; trains "
                        "once, about 1-2 s a step on 2 cores)")
    p.add_argument("--distill-steps", type=int, default=600, metavar="N",
                   help="training steps of the ReLU student (default 600)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_json_flag(p)
    p.set_defaults(func=run)


def _parse_shape(text: str) -> list[int]:
    try:
        dims = [int(d) for d in text.lower().replace(",", "x").split("x")]
    except ValueError:
        dims = []
    if not dims or any(d <= 0 for d in dims):
        raise ValueError(f"--input-shape: expected positive integers like 1x3x256x416, got {text!r}")
    return dims


def _array_data(paths: list[Path]) -> bool:
    return len(paths) == 1 and (paths[0].suffix in (".npz", ".npy") or
                                (paths[0].is_dir() and any(paths[0].glob("*.npy"))))


def preprocess_arg(text: str | None) -> Any:
    """The :class:`~sdk.preprocess.PreprocessSpec` of ``--preprocess`` (a JSON file or inline JSON), or None."""
    if not text:
        return None
    from pydantic import ValidationError

    from sdk.preprocess import PreprocessSpec

    src = Path(text)
    is_file = not text.lstrip().startswith("{") and src.suffix.lower() == ".json"
    if is_file and not src.is_file():
        raise FileNotFoundError(f"--preprocess: no such file: {src}")
    raw = src.read_text() if is_file else text
    try:
        return PreprocessSpec.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "top level"
        raise ValueError(f"--preprocess: not a valid preprocessing spec ({where}: {first['msg']}); expected "
                         "JSON like {\"ops\": [{\"op\": \"resize\", \"size\": [384, 640]}, {\"op\": "
                         "\"normalize\", \"scale\": 0.00392157, \"mean\": [0.485, 0.456, 0.406], \"std\": "
                         "[0.229, 0.224, 0.225]}, {\"op\": \"to_layout\", \"layout\": \"NCHW\"}]}") from None


def _preprocessed(args: argparse.Namespace, paths: list[Path], model_path: Path, spec: Any):
    """Calibration feeds: the --calib images and video frames through ``spec``."""
    from sdk.compress import CalibrationData
    from sdk.compress.frames import load_frames
    from sdk.runtime import read_signature

    if _array_data(paths):
        raise ValueError("--preprocess applies to images and videos; --calib gave arrays (already preprocessed)")
    inp = read_signature(model_path)[0][0]
    want = [d if isinstance(d, int) else None for d in inp.shape]
    pre = spec.build()
    frames = load_frames(paths, video_frames=args.video_frames)[:args.limit]
    feeds = [{inp.name: np.asarray(pre(f.image))} for f in frames]
    got = feeds[0][inp.name].shape
    if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got, strict=True)):
        shown = "x".join("?" if w is None else str(w) for w in want)
        raise ValueError(f"--preprocess gives arrays of shape {'x'.join(map(str, got))} but the model's input "
                         f"{inp.name!r} is {shown}" + (" (end the spec with {\"op\": \"to_layout\", \"layout\": "
                                                       "\"NCHW\"} for a batch of CHW images)"
                                                       if len(got) == 3 and len(want) == 4 else ""))
    return CalibrationData(feeds, name=f"{len(frames)} frames")


def _data(args: argparse.Namespace, model_path: Path, bundle: Any, spec: Any = None):
    """(calibration, search evaluator, held-out evaluator or None, extra input shapes)."""
    from sdk.compress import AUC, CalibrationData, FrameDetectionAgreement, OutputFidelity, Top1Accuracy, YoloxDecoder
    from sdk.compress.frames import FrameCalibration, frame_input_shapes, load_frames, model_input_hw, split_frames
    from sdk.compress.holdout import split_every_kth

    paths = [Path(p) for p in args.calib]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"--calib: no such file or folder: {p}")
    holdout = None if args.no_holdout else args.holdout
    if holdout is not None and not 0.0 < holdout < 1.0:
        raise ValueError(f"--holdout must be a fraction between 0 and 1, got {holdout}")
    shapes = [_parse_shape(t) for t in args.input_shape]
    from sdk.compress.audio_calib import audio_evaluation, is_audio_data

    if is_audio_data(paths):
        if args.eval != "fidelity" or shapes:
            raise ValueError("audio --calib is judged by --eval fidelity (cosine of the encoder output), "
                             f"without --input-shape; got --eval {args.eval}")
        return (*audio_evaluation(model_path, paths, holdout, limit=args.limit), shapes)
    if args.eval in ("top1", "auc"):
        if not args.labels:
            raise ValueError(f"--eval {args.eval} needs --labels FILE.npz with arrays X and y")
        with np.load(args.labels, allow_pickle=False) as z:
            if not {"X", "y"} <= set(z.files):
                raise ValueError(f"{args.labels}: expected arrays 'X' and 'y', got {z.files}")
            X, y = z["X"], z["y"]
        cls = Top1Accuracy if args.eval == "top1" else AUC
        idx = list(range(len(y)))
        s_idx, h_idx = split_every_kth(idx, holdout)
        calib = _loose_calibration(args, paths, model_path, bundle, spec)
        return calib, cls(X[s_idx], y[s_idx]), (cls(X[h_idx], y[h_idx]) if h_idx else None), shapes
    if args.eval == "detection" and not _array_data(paths) and spec is None:
        if bundle is not None and bundle.manifest.preprocess is not None:
            raise ValueError("--eval detection on frames letterboxes them itself (pad 114, 0..255 BGR, as YOLOX "
                             "expects); pass the bundle's .onnx file, or a .npz of preprocessed inputs")
        frames = load_frames(paths, video_frames=args.video_frames)
        search, held = split_frames(frames, holdout) if holdout else (frames, [])
        hw = model_input_hw(model_path)
        calib = FrameCalibration(search[:args.limit], hw, scale=args.image_scale)
        decoder = lambda size: YoloxDecoder(size)  # noqa: E731
        ev = FrameDetectionAgreement(model_path, [f.image for f in search], decoder)
        hev = FrameDetectionAgreement(model_path, [f.image for f in held], decoder) if held else None
        if not args.no_auto_shapes:
            for shp in frame_input_shapes(frames, hw):
                if shp not in shapes:
                    shapes.append(shp)
        return calib, ev, hev, shapes
    if shapes:
        raise ValueError("--input-shape needs --eval detection on images or videos: only then is every candidate "
                         "fed at its own input size")
    calib = _loose_calibration(args, paths, model_path, bundle, spec)
    feeds = calib.for_model(model_path)
    s_feeds, h_feeds = split_every_kth(feeds, holdout)
    calib = CalibrationData(s_feeds)
    if args.eval == "detection":
        from sdk.compress import DetectionAgreement

        shape = next(iter(feeds[0].values())).shape

        def mk(f: list) -> Evaluator:
            return DetectionAgreement(model_path, f, YoloxDecoder((shape[2], shape[3])))
    else:
        def mk(f: list) -> Evaluator:
            return OutputFidelity(model_path, f, metric="cosine")
    return calib, mk(s_feeds[:32]), (mk(h_feeds[:32]) if h_feeds else None), shapes


def _loose_calibration(args: argparse.Namespace, paths: list[Path], model_path: Path, bundle: Any,
                       spec: Any = None):
    """Calibration feeds from arrays, or images through the bundle's preprocessing, or
    letterboxed to the model's input size."""
    from sdk.compress import CalibrationData
    from sdk.compress.frames import FrameCalibration, load_frames, model_input_hw

    if spec is not None:
        return _preprocessed(args, paths, model_path, spec)
    if _array_data(paths):
        return CalibrationData.from_files(paths[0], limit=args.limit)
    if len(paths) == 1 and paths[0].is_dir() and bundle is not None and bundle.manifest.preprocess is not None:
        return CalibrationData.from_bundle(bundle, paths[0], limit=args.limit)
    frames = load_frames(paths, video_frames=args.video_frames)
    return FrameCalibration(frames[:args.limit], model_input_hw(model_path), scale=args.image_scale)


def _num(value: float | None) -> float:
    """A measured figure of the chosen candidate (every one the search keeps has them all)."""
    if value is None:
        raise RuntimeError("the chosen candidate lacks a measured figure")
    return float(value)


def run(args: argparse.Namespace) -> int:
    from sdk.bundle import Manifest, ModelEntry, Provenance, file_sha256, save_bundle
    from sdk.compress import Recipe, optimize
    from sdk.compress.graph_prep import load_model

    model_path, bundle = resolve_model_arg(args.model)
    load_model(model_path)  # a broken model fails here, named, before any work
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise ValueError(f"--out {out} exists and is not empty; pass --overwrite to replace it")
    spec = preprocess_arg(args.preprocess)
    calib, evaluator, held, shapes = _data(args, model_path, bundle, spec)
    with tempfile.TemporaryDirectory(prefix="edgewise-optimize-") as tmp:
        res = optimize(model_path, calib, evaluator, options_from_args(args, Path(tmp), held, shapes))
        chosen = res.chosen
        recipe = chosen.recipe or Recipe([])
        recipe_file = recipe.to_file(Path(tmp) / "recipe.yaml")
        metrics = {res.metric_name: _num(chosen.metric), f"{res.metric_name}_fp32": _num(res.baseline.metric),
                   f"{res.metric_name}_search": _num(chosen.search_metric if chosen.search_metric is not None
                                                     else chosen.metric),
                   "latency_ms": _num(chosen.latency_ms), "latency_ms_fp32": _num(res.baseline.latency_ms),
                   "speedup": _num(chosen.speedup), "size_ratio": _num(chosen.size_ratio)}
        old = bundle.manifest if bundle is not None else None
        files: dict[str, Any] = {"model.onnx": chosen.path, "recipe.yaml": recipe_file,
                                 "report.json": Path(tmp) / "report.json", "report.md": Path(tmp) / "report.md",
                                 "pareto.png": Path(tmp) / "pareto.png"}
        if bundle is not None:
            model_rel = bundle.manifest.models["model"].file
            for rel in bundle.manifest.files:
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
            labels=old.labels if old else None,
            preprocess=spec or (old.preprocess if old else None),
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
    held_out = res.evaluation.get("holdout") is not None
    rows = [["", "candidate", "latency ms", "speedup (90% CI)", "size",
             "held-out" if held_out else "metric", "search" if held_out else "", "delta", "note"]]
    for c in res.candidates:
        ci = f" ({c.speedup_ci[0]:.2f}-{c.speedup_ci[1]:.2f})" if c.speedup_ci else ""
        rows.append(["*" if c.chosen else "", c.name, _f(c.latency_ms, ".2f"), _f(c.speedup, ".2f", "x") + ci,
                     fmt_bytes(c.size_bytes) if c.size_bytes else "-", _f(c.metric, ".4f"),
                     _f(c.search_metric, ".4f") if held_out else "", _f(c.delta, "+.4f"),
                     "over budget" if c.metric is not None and not c.within_budget else (c.error or "")[:60]])
    skipped = "".join(f"\nskipped {s['name']}: {s['reason']}" for s in res.skipped)
    ev = res.evaluation
    data = f"search data: {ev['search']['size']}" + (f"; held-out: {ev['holdout']['size']}" if held_out else "")
    human = (f"{table(rows)}\n\n{data}\nCPU: {res.isa_profile} ({_device_text(res.device)}){skipped}\n\n"
             f"{res.note}\nbundle written to {b.path}")
    emit(args, {"bundle": str(b.path), **res.to_dict()}, human)
    return 0


def options_from_args(args: argparse.Namespace, out_dir: Path, holdout: Any,
                      input_shapes: list[list[int]]) -> "OptimizeOptions":
    """The :class:`~sdk.compress.OptimizeOptions` the command's flags ask for."""
    from sdk.compress import OptimizeOptions, Recipe

    return OptimizeOptions(
        target=args.target, out_dir=out_dir, progress=not args.no_progress and sys.stderr.isatty(),
        budget={"max_drop": args.max_drop, "size_only": args.size_only},
        sensitivity={"enabled": False if args.no_sensitivity else None},
        bit_allocation={"enabled": False if args.no_bit_allocation else None},
        data={"holdout": holdout},
        candidates={"recipes": {"recipe": Recipe.from_file(args.recipe)} if args.recipe else None,
                    "input_shapes": input_shapes,
                    "relu_distill": args.relu_distill,
                    "relu_distill_steps": args.distill_steps})


def _device_text(device: dict[str, Any]) -> str:
    from sdk.runtime import DeviceInfo

    return DeviceInfo.model_validate(device).summary() if device else "device not read"


def _f(v: Any, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"
