"""``edgewise drive ...``: run the perception pipeline on a source, calibrate a camera.

Wired through the ``edgewise.commands`` entry point (``drive = apps.driving_perception.cli:register``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sdk.cli import add_command_group

EXIT_USAGE, EXIT_UNAVAILABLE = 2, 4     # the documented exit codes (README, `edgewise --help`)


def register(subparsers) -> None:
    sub = add_command_group(subparsers, "drive", help="driving perception: detection, tracking, lanes, warnings")

    run = sub.add_parser("run", help="run the pipeline on a video file, image folder, camera index or URL")
    run.add_argument("source", help="video file, folder of images, camera index (0) or stream URL")
    run.add_argument("--out", required=True, type=Path, help="output folder (annotated.mp4, events.jsonl, ...)")
    run.add_argument("--live", action="store_true", help="real-time clock: late frames are dropped and counted")
    run.add_argument("--model", help="ONNX detector or bundle (default: the store's yolox-nano)")
    grp = run.add_mutually_exclusive_group()
    grp.add_argument("--optimized", dest="optimized", action="store_true", default=True,
                     help="use the optimized detector, built and cached on first use (default)")
    grp.add_argument("--fp32", dest="optimized", action="store_false", help="use the original FP32 detector")
    run.add_argument("--recipe", type=Path, help="compression recipe for --optimized (default: the committed one)")
    run.add_argument("--calibration", type=Path, help="lens calibration from `edgewise drive calibrate`, or the "
                     "camera.json a previous run wrote (lens and road geometry)")
    run.add_argument("--lane-preset", help="override the road geometry with the trapezoid of a known camera "
                     "(udacity_advanced, udacity_p1); default: estimated from the first frames")
    run.add_argument("--no-lanes", action="store_true", help="turn lane finding off")
    run.add_argument("--no-video", action="store_true", help="do not write annotated.mp4")
    run.add_argument("--max-frames", type=int, help="stop after N frames")
    run.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: onnxruntime's choice)")
    run.add_argument("--json", action="store_true", help="print the run summary as JSON")
    run.set_defaults(func=cmd_run)

    cal = sub.add_parser("calibrate", help="calibrate the camera from chessboard photos")
    cal.add_argument("directory", type=Path, help="folder of chessboard photos from one camera")
    cal.add_argument("--out", required=True, type=Path, help="calibration file to write (JSON)")
    cal.add_argument("--pattern", default="9x6", help="inner corners per row x per column (default 9x6)")
    cal.add_argument("--json", action="store_true", help="print the result as JSON")
    cal.set_defaults(func=cmd_calibrate)


def _pattern(text: str) -> tuple[int, int]:
    try:
        a, b = text.lower().split("x")
        return int(a), int(b)
    except ValueError:
        raise ValueError(f"--pattern must look like 9x6, got {text!r}") from None


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .lanes.calibration import calibrate_camera

    if args.out.is_dir():
        raise ValueError(f"--out must be a file to write, but {args.out} is a folder")
    cal = calibrate_camera(args.directory, _pattern(args.pattern))
    try:
        cal.save(args.out)
    except OSError as exc:          # keep the finished calibration: print it
        print(cal.model_dump_json(indent=2))
        raise ValueError(f"could not write {args.out} ({exc}); the calibration is printed above") from exc
    if args.json:
        print(json.dumps({"file": str(args.out), "rms_px": cal.rms_px, "images_used": len(cal.images_used),
                          "images_rejected": cal.images_rejected}))
    else:
        print(f"calibration written to {args.out}: RMS reprojection error {cal.rms_px:.3f} px "
              f"from {len(cal.images_used)} images ({len(cal.images_rejected)} without a board)")
    return 0


def calibration_frames(source_spec: str, n: int = 24, stride: int = 5) -> list:
    """Up to ``n`` frames (every ``stride``-th) from the start of a file/folder source."""
    from sdk.errors import PipelineError

    from .sources import open_source

    src = open_source(source_spec)
    if type(src).__name__ == "CameraSource":
        stride = 1
    frames = []
    try:
        for i, item in enumerate(src):
            if i % stride == 0:
                frames.append(item.data)
            if len(frames) >= n:
                break
    except PipelineError as exc:   # the run itself reports it (health FAILED, exit 4)
        from sdk import logger

        logger.warning("no calibration frames: %s", exc)
    close = getattr(src, "close", None)
    if callable(close):
        close()
    return frames


def cmd_run(args: argparse.Namespace) -> int:
    from sdk.runtime import EngineOptions, SessionOptions

    from .lanes.detector import LaneOptions
    from .lanes.geometry import load_camera_file
    from .model import DEFAULT_RECIPE, optimized_choice, resolve_model
    from .pipeline import DriveOptions, DrivePipeline
    from .sources import open_source

    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out must be a folder, but {args.out} is an existing file")
    camera = load_camera_file(args.calibration) if args.calibration else None
    calibration = camera.lens if camera is not None else None
    geometry = camera.road if camera is not None and not args.lane_preset else None
    if geometry is not None:
        geometry = geometry.model_copy(update={"source": "saved"})
    lanes = None if args.no_lanes else (LaneOptions.preset(args.lane_preset) if args.lane_preset else LaneOptions())
    options = DriveOptions(mode="live" if args.live else "offline", lanes=lanes, annotate=not args.no_video)
    choice = resolve_model(args.model)
    if args.optimized and choice.bundle is None:
        frames = calibration_frames(args.source)
        if frames:
            choice = optimized_choice(choice, frames, args.recipe or DEFAULT_RECIPE, progress=True)
    engine_opts = EngineOptions(session=SessionOptions(intra_op_threads=args.threads))
    source = open_source(args.source)
    with DrivePipeline(choice.detector(engine_opts), options, calibration, geometry=geometry) as pipe:
        try:
            summary = pipe.run(source, args.out, max_frames=args.max_frames, fps=getattr(source, "fps", None),
                               progress=True)
        except OSError as exc:      # an output that cannot be written is bad usage (exit 2), not a crash
            raise ValueError(f"could not write the outputs in {args.out}: {exc}") from exc
    info = {"model": str(choice.path), "optimized": choice.bundle is not None, **summary.to_dict()}
    if choice.bundle is not None:
        info["model_metrics"] = dict(choice.bundle.manifest.metrics)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        reasons = f" ({'; '.join(summary.health_reasons)})" if summary.health_reasons else ""
        print(f"{summary.processed} frames processed, {summary.dropped} dropped, {summary.fps:.1f} FPS end to end "
              f"({options.mode}); health at the end: {summary.health_final}{reasons}; {summary.events} events")
        if summary.geometry is not None:
            g = summary.geometry
            conf = "" if g["confidence"] is None else f", confidence {g['confidence']:.2f}"
            print(f"road geometry: {g['source']}{conf}, horizon at row {g['horizon_y']:.0f}, vanishing point "
                  f"({g['vanishing_point'][0]:.0f}, {g['vanishing_point'][1]:.0f}); lanes found in "
                  f"{summary.lanes_found} of {summary.processed} frames")
        if summary.stages:
            print("per-stage p50 ms: " + ", ".join(f"{k} {v['p50_ms']:.1f}" for k, v in summary.stages.items()))
        for k, v in summary.files.items():
            print(f"  {k:8s} {v}")
    if summary.processed == 0:   # nothing could be processed: a camera is unavailable (4), a file is bad input (2)
        print(f"error: no frame processed: {'; '.join(summary.health_reasons)}", file=sys.stderr)
        return EXIT_UNAVAILABLE if summary.camera_source else EXIT_USAGE
    return 0
