"""Driving app: end-to-end FPS and per-stage latency, FP32 vs optimized detector, side by side.

    .venv/bin/python benchmarks/driving_fps.py [--frames N] [--recipe FILE] [--threads T]

On the real clips of ../shared/data/driving (skipped with a message where absent):
``vehicle_detection/test_video.mp4`` (cars) and ``lanelines_p1/test_videos/solidWhiteRight.mp4``,
re-encoded at 640x360 and 1280x720 so that *decode* is a real decode at that size. Each
clip and size runs the full offline pipeline (decode, pre, model, post/NMS, track, lanes,
warn, annotate, encode) once with the FP32 detector and once with the optimized one,
alternating, so that load on a shared machine hits both alike. Also prints the detection
agreement (F1 at IoU 0.5, same class) of the optimized detector with FP32 on the real frames.
Target: >= 30 FPS end to end at 640x360 with the optimized detector; pre+post < 15% of the frame.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import apps.driving_perception.model as drive_model  # noqa: E402
from apps.driving_perception.lanes import LaneOptions  # noqa: E402
from apps.driving_perception.pipeline import DriveOptions, DrivePipeline  # noqa: E402
from sdk.pipeline import VideoSource  # noqa: E402
from sdk.runtime import EngineOptions, SessionOptions  # noqa: E402

SHARED = Path(os.environ.get("EDGEWISE_SHARED", REPO.parent / "shared"))
SIZES = [(640, 360), (1280, 720)]
CLIPS = [("vehicle_detection/test_video.mp4", "udacity_advanced"),
         ("lanelines_p1/test_videos/solidWhiteRight.mp4", "udacity_p1")]
STAGES = ["decode", "pre", "model", "post", "track", "lanes", "warn", "annotate", "encode"]


def resize_clip(src: Path, size: tuple[int, int], dst: Path, max_frames: int) -> Path:
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    n = 0
    while n < max_frames:
        ok, f = cap.read()
        if not ok:
            break
        out.write(cv2.resize(f, size, interpolation=cv2.INTER_AREA))
        n += 1
    cap.release()
    out.release()
    return dst


def real_frames(max_video: int = 60) -> list:
    frames = [cv2.imread(f) for f in sorted(glob.glob(str(SHARED / "data/driving/*/test_images/*.jpg")))]
    for rel, _ in CLIPS:
        cap = cv2.VideoCapture(str(SHARED / "data/driving" / rel))
        i = 0
        while i < max_video:
            ok, f = cap.read()
            if not ok:
                break
            if i % 3 == 0:
                frames.append(f)
            i += 1
        cap.release()
    return frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=75, help="frames per clip (default 75)")
    ap.add_argument("--recipe", type=Path, default=drive_model.DEFAULT_RECIPE)
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args()
    model = SHARED / "models" / "yolox_nano_coco_416.onnx"
    if not model.is_file():
        print(f"skipped: {model} not found (set EDGEWISE_SHARED to the shared/ folder)")
        return 0
    drive_model.verify_sha256(model, drive_model.YOLOX_NANO_SHA256)
    fp32 = drive_model.resolve_model(model)
    frames = real_frames()
    work = Path(tempfile.mkdtemp(prefix="edgewise-drive-bench-"))
    bundle = drive_model.build_optimized(model, frames[::2], args.recipe, out_dir=work / "optimized", rebuild=True)
    variants = {"fp32": fp32.path, "optimized": bundle.path}   # the bundle carries its input size
    eng_opts = EngineOptions(session=SessionOptions(intra_op_threads=args.threads))
    print(f"optimized detector: {args.recipe.name} -> {bundle.manifest.description}")

    results: dict = {}
    for w, h in SIZES:
        clips = [(resize_clip(SHARED / "data/driving" / rel, (w, h), work / f"{Path(rel).stem}_{w}.mp4", args.frames),
                  preset) for rel, preset in CLIPS]
        for name in variants:
            results[(w, name)] = {"frames": 0, "wall_s": 0.0, "cpu_s": 0.0, "stages": {s: 0.0 for s in STAGES}}
        for clip, preset in clips:
            for name, path in variants.items():            # alternate FP32 / optimized per clip
                opts = DriveOptions(lanes=LaneOptions.preset(preset))
                det = drive_model.resolve_model(path).detector(eng_opts)
                c0 = time.process_time()
                with DrivePipeline(det, opts) as pipe:
                    s = pipe.run(VideoSource(clip), work / f"out_{name}_{w}_{clip.stem}")
                r = results[(w, name)]
                r["cpu_s"] += time.process_time() - c0
                r["frames"] += s.processed
                r["wall_s"] += s.wall_s
                for st in STAGES:
                    r["stages"][st] += s.stages.get(st, {}).get("mean_ms", 0.0) * s.processed

    load = os.getloadavg()[0]
    print(f"\nEnd to end, offline mode, mean ms per frame per stage (both clips); load average {load:.1f} on "
          f"{os.cpu_count()} CPUs. 'cpu ms' = process CPU time per frame (all threads), 'FPS/cpu' = 1000 / cpu ms,\n"
          f"the rate one dedicated core would sustain: wall-clock figures are inflated when other jobs share the CPU.")
    head = (f"{'size':>9} {'detector':>9} {'FPS':>6} {'cpu ms':>7} {'FPS/cpu':>7} "
            + " ".join(f"{s:>8}" for s in STAGES)
            + f" {'pre+post':>9}")
    print(head)
    table = {}
    for (w, name), r in results.items():
        per = {s: v / max(1, r["frames"]) for s, v in r["stages"].items()}
        total = sum(per.values())
        fps = r["frames"] / r["wall_s"]
        share = (per["pre"] + per["post"]) / total if total else 0.0
        h = dict(SIZES)[w]
        cpu_ms = 1e3 * r["cpu_s"] / max(1, r["frames"])
        print(f"{w}x{h:<5} {name:>9} {fps:6.1f} {cpu_ms:7.1f} {1e3 / cpu_ms:7.1f} "
              + " ".join(f"{per[s]:8.2f}" for s in STAGES) + f" {share:8.1%}")
        table[f"{w}x{h}/{name}"] = {"fps": round(fps, 2), "cpu_ms_per_frame": round(cpu_ms, 2),
                                    "stage_mean_ms": {k: round(v, 3) for k, v in per.items()},
                                    "pre_post_share": round(share, 4), "frames": r["frames"]}
    for w, h in SIZES:
        a, b = results[(w, "fp32")], results[(w, "optimized")]
        ratio = (b["frames"] / b["wall_s"]) / (a["frames"] / a["wall_s"])
        ma = a["stages"]["model"] / a["frames"]
        mb = b["stages"]["model"] / b["frames"]
        print(f"{w}x{h}: optimized / FP32 end-to-end FPS ratio {ratio:.2f}; model stage {mb:.1f} vs {ma:.1f} ms "
              f"(ratio {mb / ma:.2f})")

    with (drive_model.resolve_model(variants["fp32"]).detector() as ref,
          drive_model.resolve_model(variants["optimized"]).detector() as opt):
        ag = drive_model.detection_agreement(ref, opt, frames, iou=0.5)
    print(f"\nDetection agreement optimized vs FP32 on {len(frames)} real frames: F1@0.5 "
          f"{ag['detection_agreement_f1']:.3f} (TP {ag['agreement_tp']:.0f}, FP {ag['agreement_fp']:.0f}, "
          f"FN {ag['agreement_fn']:.0f}, {ag['agreement_reference_boxes']:.0f} FP32 boxes)")
    fps360 = table["640x360/optimized"]["fps"]
    print(f"target >= 30 FPS at 640x360 with the optimized detector: {'met' if fps360 >= 30 else 'NOT met'} "
          f"({fps360:.1f}); pre+post share {table['640x360/optimized']['pre_post_share']:.1%} (target < 15%)")
    if args.json:
        args.json.write_text(json.dumps({"table": table, "agreement": ag,
                                         "recipe": bundle.manifest.extra["recipe"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
