"""``edgewise batch drive SRC --out DIR``: perception over a folder of clips on Ray.

One Parquet row per clip: its summary (frames, FPS, health at the end, counts of forward
collision and lane departure warnings) and its events (``events_json``, the clip's
``events.jsonl`` as a JSON list). Each worker holds one detector and runs the app's own
:class:`~apps.driving_perception.pipeline.DrivePipeline` (offline mode, no annotated video)
on each clip, as ``edgewise drive run --fp32 --no-video`` does. A clip with no decodable
frame is an error row. Found by ``edgewise batch`` next to this app's entry point.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from sdk.batch import ItemResult, JobSpec, add_batch_arguments, run_from_args, scratch_dir

CLIP_SUFFIXES = [".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"]


class _Shared:
    """The worker's detector lent to one clip's pipeline: the pipeline's ``close`` leaves it open."""

    def __init__(self, detector):
        self._detector = detector

    def __call__(self, *args, **kwargs):
        return self._detector(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._detector, name)

    def close(self) -> None:
        pass


class DriveProcessor:
    """Built once per worker: one detector; a fresh pipeline (tracker, lanes, health) per clip."""

    def __init__(self, model: str | None = None, max_frames: int | None = None, lanes: bool = True,
                 lane_preset: str | None = None, threads: int = 1):
        from apps.driving_perception.model import resolve_model
        from sdk.runtime import EngineOptions, SessionOptions

        self.max_frames, self.lanes, self.lane_preset = max_frames, lanes, lane_preset
        self.detector = resolve_model(model).detector(EngineOptions(session=SessionOptions(intra_op_threads=threads)))
        self._scratch = scratch_dir("drive", self)   # removed at worker exit, or by the next worker

    def process(self, path: Path) -> ItemResult:
        from apps.driving_perception.lanes.detector import LaneOptions
        from apps.driving_perception.pipeline import DriveOptions, DrivePipeline
        from apps.driving_perception.sources import open_source

        lanes = (LaneOptions.preset(self.lane_preset) if self.lane_preset else LaneOptions()) if self.lanes else None
        out = self._scratch / "clip"
        shutil.rmtree(out, ignore_errors=True)
        source = open_source(path)
        try:
            with DrivePipeline(_Shared(self.detector), DriveOptions(mode="offline", lanes=lanes, annotate=False)) as p:
                s = p.run(source, out, max_frames=self.max_frames, fps=getattr(source, "fps", None))
        finally:
            close = getattr(source, "close", None)
            if callable(close):
                close()
        events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines() if line.strip()]
        kinds = [e.get("event") for e in events]
        scores = {"frames": float(s.processed), "fps": s.fps, "events": float(len(events)),
                  "fcw": float(kinds.count("FCW")), "ldw": float(kinds.count("LDW"))}
        fields = {"health_final": str(s.health_final), "events_json": json.dumps(events)}
        if s.processed == 0:
            return ItemResult(status="error", error=True, reasons=["no frame could be decoded from the clip"],
                              scores=scores, fields=fields)
        return ItemResult(status="ok", reasons=[f"{s.processed} frames, {len(events)} events, health at the end "
                                                f"{s.health_final}"], scores=scores, fields=fields)

    def close(self) -> None:
        self.detector.close()
        shutil.rmtree(self._scratch, ignore_errors=True)


def drive_spec(model: str | None = None, max_frames: int | None = None, lanes: bool = True,
               lane_preset: str | None = None) -> JobSpec:
    """The job for this detector (default: the store's YOLOX-nano, FP32), resolved on the driver;
    the workers open the same path (on a cluster: a path every node can read)."""
    from apps.driving_perception.model import resolve_model, sha256_of

    choice = resolve_model(model)
    path = choice.path
    settings = json.dumps({"max_frames": max_frames, "lanes": lanes, "lane_preset": lane_preset}, sort_keys=True)
    model_hash = hashlib.sha256(f"{sha256_of(path)}|{settings}".encode()).hexdigest()
    name = (f"{choice.bundle.manifest.name}@{choice.bundle.manifest.version}" if choice.bundle is not None
            else Path(path).name)
    return JobSpec(name="drive", processor="apps.driving_perception.batch:DriveProcessor",
                   kwargs={"model": str(Path(model).absolute()) if model else str(Path(path).absolute()),
                           "max_frames": max_frames, "lanes": lanes, "lane_preset": lane_preset},
                   model_name=name, model_hash=model_hash, scores=["frames", "fps", "events", "fcw", "ldw"],
                   fields=["health_final", "events_json"], suffixes=CLIP_SUFFIXES, batch_size=1)


def register_batch(subparsers) -> None:
    p = subparsers.add_parser("drive", help="driving perception over a folder of clips: events and summary per clip",
                              description="Run the driving perception pipeline (offline mode, FP32 detector, no "
                                          "video) on every clip under SRC on Ray; one row per clip.")
    add_batch_arguments(p)
    p.add_argument("--model", help="ONNX detector or bundle (default: the store's yolox-nano)")
    p.add_argument("--max-frames", type=int, default=None, help="stop each clip after N frames")
    p.add_argument("--no-lanes", action="store_true", help="turn lane finding off")
    p.add_argument("--lane-preset", help="road trapezoid of a known camera (udacity_advanced, udacity_p1)")

    def run(args) -> int:
        if args.max_frames is not None and args.max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
        return run_from_args(drive_spec(args.model, args.max_frames, not args.no_lanes, args.lane_preset), args)

    p.set_defaults(func=run)
