"""Driving app: what the automatic road geometry costs, and lane-found rates preset vs estimated.

    .venv/bin/python benchmarks/driving_geometry.py [--json FILE]

On the three real sources of ../shared/data/driving (skipped with a message where absent):
the P1 clip ``lanelines_p1/test_videos/solidWhiteRight.mp4`` (960x540, 221 frames), the
highway clip ``vehicle_detection/test_video.mp4`` (1280x720, 38 frames) and the eight
``advanced_lane_lines/test_images`` stills (1280x720, one camera, different roads). For each,
in one run:

* lane-found rate (state ``ok``; ``available`` adds ``coasting``) with the source's preset
  (``udacity_p1`` / ``udacity_advanced``) and with the geometry estimated from the frames,
  no preset, no calibration. The stills are run twice: as one stream (what
  ``edgewise drive run FOLDER`` does: the geometry comes from the first frames) and each on
  its own (a fresh detector per still: its geometry from that one frame);
* per-stage cost of the estimate: LSD segments and a single-frame vote (for one frame in
  ``estimate_stride`` during the estimation window, and one frame in ``recheck_every``
  after it: the camera-moved check), the pooled votes (1, 2, 4, ... pooled frames), the
  whole estimate (one-off: the sum over the window), and the lane stage per frame with the
  estimated geometry (during and after the window) vs the preset.

Times are medians of ``time.perf_counter`` over the frames (``--repeat`` passes); the CPU
and its ISA (``sdk.runtime.discover_device``) are printed with them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from apps.driving_perception.lanes import LaneDetector, LaneOptions  # noqa: E402
from apps.driving_perception.lanes.road import GeometryOptions  # noqa: E402
from apps.driving_perception.lanes.vanishing import VanishingPointEstimator  # noqa: E402
from sdk.pipeline import VideoSource  # noqa: E402
from sdk.runtime import discover_device  # noqa: E402

SHARED = Path(os.environ.get("EDGEWISE_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data" / "driving"
SOURCES = [("P1 clip solidWhiteRight.mp4", "lanelines_p1/test_videos/solidWhiteRight.mp4", "udacity_p1"),
           ("highway clip test_video.mp4", "vehicle_detection/test_video.mp4", "udacity_advanced"),
           ("advanced-lane stills (8)", "advanced_lane_lines/test_images", "udacity_advanced")]


def frames_of(path: Path) -> list[np.ndarray]:
    if path.is_dir():
        return [cv2.imread(str(p)) for p in sorted(path.glob("*.jpg"))]
    return [f.data for f in VideoSource(path)]


def lane_rates(frames: list[np.ndarray], options: LaneOptions | None, each_alone: bool = False) -> dict:
    """Share of frames with lanes ok / available, and the per-frame lane stage times (ms)."""
    ld = LaneDetector(options)
    states, times = [], []
    for f in frames:
        if each_alone:
            ld = LaneDetector(options)
        t0 = time.perf_counter()
        states.append(ld(f).state)
        times.append((time.perf_counter() - t0) * 1e3)
    n = len(states)
    return {"frames": n, "ok": sum(s == "ok" for s in states), "ok_share": sum(s == "ok" for s in states) / n,
            "available_share": sum(s != "lost" for s in states) / n, "ms": times}


def estimate_costs(frames: list[np.ndarray], repeat: int) -> dict:
    """Median ms of each step of the estimate on these frames."""
    est = VanishingPointEstimator()
    size = (frames[0].shape[1], frames[0].shape[0])
    g = GeometryOptions()
    seg_ms, vote_ms, pooled_ms, segs = [], [], {}, []
    for _ in range(repeat):
        segs = []
        for f in frames[:g.estimate_frames * g.estimate_stride:g.estimate_stride]:
            t0 = time.perf_counter()
            s = est.segments(f)
            t1 = time.perf_counter()
            est.vote(s, size)
            t2 = time.perf_counter()
            seg_ms.append((t1 - t0) * 1e3)
            vote_ms.append((t2 - t1) * 1e3)
            segs.append(s)
        k = 1
        while k <= len(segs):
            pool = np.concatenate(segs[:k])
            t0 = time.perf_counter()
            est.vote(pool, size)
            pooled_ms.setdefault(k, []).append((time.perf_counter() - t0) * 1e3)
            k *= 2
        pool = np.concatenate(segs)
        t0 = time.perf_counter()
        est.vote(pool, size)
        pooled_ms.setdefault(len(segs), []).append((time.perf_counter() - t0) * 1e3)
    per_frame = float(np.median(seg_ms) + np.median(vote_ms))
    pooled = {k: float(np.median(v)) for k, v in pooled_ms.items()}
    return {"frames_in_window": min(len(frames), g.estimate_frames * g.estimate_stride), "frames_pooled": len(segs),
            "segments_ms": float(np.median(seg_ms)),
            "single_vote_ms": float(np.median(vote_ms)), "pooled_vote_ms": pooled,
            "segments_per_frame": float(np.median([len(s) for s in segs])),
            "one_off_ms": per_frame * len(segs) + sum(pooled.values()),
            "recheck_ms_per_frame": per_frame / g.recheck_every}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="passes over each source for the estimate's timings")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    dev = discover_device()
    isa = ", ".join(k for k, v in dev.isa.items() if v)
    print(f"CPU: {dev.cpu_model}, {dev.usable_cores} usable cores; ISA: {isa}")
    results = {"device": {"cpu": dev.cpu_model, "cores": dev.usable_cores, "isa": isa}, "sources": []}
    rows = []
    for name, rel, preset in SOURCES:
        path = DATA / rel
        if not path.exists():
            print(f"skipped {name}: {path} not found (set EDGEWISE_SHARED)")
            continue
        frames = frames_of(path)
        pre = lane_rates(frames, LaneOptions.preset(preset))
        auto = lane_rates(frames, None)
        entry = {"source": name, "size": [frames[0].shape[1], frames[0].shape[0]], "preset": preset,
                 "preset_rates": {k: v for k, v in pre.items() if k != "ms"},
                 "estimated_rates": {k: v for k, v in auto.items() if k != "ms"},
                 "costs": estimate_costs(frames, args.repeat)}
        window = entry["costs"]["frames_in_window"]
        after = auto["ms"][window:] or auto["ms"]
        entry["lanes_ms_per_frame"] = {"preset": float(np.median(pre["ms"])),
                                       "estimated_during_window": float(np.median(auto["ms"][:window])),
                                       "estimated_after_window": float(np.median(after))}
        if path.is_dir():
            alone = lane_rates(frames, None, each_alone=True)
            pre_alone = lane_rates(frames, LaneOptions.preset(preset), each_alone=True)
            entry["each_alone"] = {"preset_ok": pre_alone["ok"], "estimated_ok": alone["ok"], "frames": alone["frames"]}
        results["sources"].append(entry)
        rows.append(entry)
    print("\nLane-found rate (state ok) per source, preset vs estimated (no preset, no calibration):")
    print("| source | size | frames | preset | ok (preset) | ok (estimated) | available (estimated) |")
    print("|---|---|---|---|---|---|---|")
    for e in rows:
        p, a = e["preset_rates"], e["estimated_rates"]
        print(f"| {e['source']} | {e['size'][0]}x{e['size'][1]} | {p['frames']} | {e['preset']} | "
              f"{p['ok']} ({p['ok_share']:.0%}) | {a['ok']} ({a['ok_share']:.0%}) | {a['available_share']:.0%} |")
        if "each_alone" in e:
            x = e["each_alone"]
            print(f"| {e['source']}, each still alone | {e['size'][0]}x{e['size'][1]} | {x['frames']} | "
                  f"{e['preset']} | {x['preset_ok']} | {x['estimated_ok']} | |")
    print("\nCost of the estimate (median ms):")
    print("| source | segments (LSD) / frame | single vote | pooled vote, all window | one-off estimate "
          "| camera-moved check / frame | lanes / frame: preset | estimated, window | estimated, after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for e in rows:
        c, lm = e["costs"], e["lanes_ms_per_frame"]
        last = c["pooled_vote_ms"][max(c["pooled_vote_ms"])]
        print(f"| {e['source']} | {c['segments_ms']:.1f} ({c['segments_per_frame']:.0f} kept) | "
              f"{c['single_vote_ms']:.1f} | {last:.1f} ({c['frames_pooled']} of {c['frames_in_window']} frames) | "
              f"{c['one_off_ms']:.0f} | "
              f"{c['recheck_ms_per_frame']:.2f} | {lm['preset']:.1f} | {lm['estimated_during_window']:.1f} | "
              f"{lm['estimated_after_window']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
