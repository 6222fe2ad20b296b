"""``demo()``: the driving app on a clip any machine can make, and on the real clips if present.

1. Synthesizes a 3 s road clip (640x360, lane lines, a drift across the lane, a box ahead)
   and runs the full pipeline on it: lanes, LDW events, health, annotated video.
2. Where ``../shared`` exists (or ``$EDGEWISE_SHARED``), runs YOLOX-nano (FP32 and the
   optimized variant built on first use) on the real dashcam clips.
Prints FPS and where every output is. ``python -m apps.driving_perception.demo``.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _shared() -> Path | None:
    root = Path(os.environ.get("EDGEWISE_SHARED", REPO.parent / "shared"))
    return root if (root / "data" / "driving").is_dir() else None


def _detector_choice(shared: Path | None):
    """FP32 YOLOX-nano: the shared copy, else the store's cached/pulled one, else None."""
    from .model import YOLOX_NANO_SHA256, resolve_model, verify_sha256

    if shared is not None and (shared / "models" / "yolox_nano_coco_416.onnx").is_file():
        return resolve_model(verify_sha256(shared / "models" / "yolox_nano_coco_416.onnx", YOLOX_NANO_SHA256))
    try:
        return resolve_model(None)
    except Exception as exc:  # offline, no cache: lanes and health still run
        print(f"  (no detector: {exc}; running lanes, warnings and health only)")
        return None


def _run(choice, clip: Path, out: Path, preset: str | None, max_frames: int | None = None) -> None:
    from sdk.pipeline import VideoSource

    from .lanes import LaneOptions
    from .pipeline import DriveOptions, DrivePipeline

    opts = DriveOptions(lanes=LaneOptions.preset(preset) if preset else LaneOptions())
    det = choice.detector() if choice is not None else None
    with DrivePipeline(det, opts) as pipe:
        s = pipe.run(VideoSource(clip), out, max_frames=max_frames)
    stages = ", ".join(f"{k} {v['p50_ms']:.1f}" for k, v in s.stages.items())
    print(f"  {clip.name}: {s.processed} frames at {s.fps:.1f} FPS end to end; health {s.health_final}; "
          f"{s.events} events\n    per-stage p50 ms: {stages}\n    outputs: {out}/ (annotated.mp4, events.jsonl, "
          f"frames.jsonl, latency.json)")


def demo(out_dir: str | Path | None = None) -> Path:
    from .synthetic import write_clip

    out = Path(out_dir) if out_dir else Path(tempfile.gettempdir()) / "edgewise-demo" / "driving"
    out.mkdir(parents=True, exist_ok=True)
    shared = _shared()
    print("Driving perception demo")
    clip = write_clip(out / "synthetic_road.mp4", n_frames=75, size=(640, 360))
    choice = _detector_choice(shared)
    print(f"- synthetic clip {clip} (no real cars: lanes, lane departure, health)")
    _run(choice, clip, out / "synthetic", None)
    if shared is None:
        print("- real clips: ../shared not found (set EDGEWISE_SHARED), skipped")
        return out
    clips = [(shared / "data/driving/vehicle_detection/test_video.mp4", None),      # no preset: the road
             (shared / "data/driving/lanelines_p1/test_videos/solidWhiteRight.mp4", None)]  # geometry is estimated
    print("- real clips, FP32 YOLOX-nano")
    for path, preset in clips:
        _run(choice, path, out / f"{path.stem}_fp32", preset, max_frames=100)
    from .cli import calibration_frames
    from .model import optimized_choice

    opt = optimized_choice(choice, calibration_frames(str(clips[0][0])))
    m = opt.bundle.manifest.metrics
    print(f"- optimized detector ({opt.bundle.path}): agreement with FP32 F1@0.5 {m['detection_agreement_f1']:.3f}, "
          f"p50 {m['latency_p50_ms_optimized']:.1f} ms vs {m['latency_p50_ms_fp32']:.1f} ms FP32")
    for path, preset in clips:
        _run(opt, path, out / f"{path.stem}_optimized", preset, max_frames=100)
    return out


if __name__ == "__main__":
    demo()
