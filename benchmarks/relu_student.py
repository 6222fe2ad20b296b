"""Train one ReLU student of YOLOX-nano and print its detection F1 against FP32, float and INT8.

The student is what ``edgewise optimize --relu-distill`` trains (``sdk.compress.relu_distill``),
at 256x416, on the CLI's search split of the driving frames (``split_frames(..., 0.4)``: whole
files held out); F1 is against the FP32 416x416 model on the search frames and on the held-out
frames, for the float student and for ``quantize_int8`` of it. The flags set the pass's config,
and ``--all-video-frames`` trains on every frame of the search-side videos instead of the 24
sampled ones (more unlabelled data from the same files; the held-out files stay unseen).

    .venv/bin/python benchmarks/relu_student.py --steps 700 --lr 5e-4 --anneal 0.3
    .venv/bin/python benchmarks/relu_student.py --steps 1200 --all-video-frames

Training is the slow part: about 1.2 s a step on 2 cores (2.4 s on one thread). Speed is not
timed here (``int8_yolox.py --relu`` times the student against FP32).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yolox_frames import cli_split, frames_line  # noqa: E402  (benchmarks/, the script's folder)

from sdk.compress import Recipe, Workspace  # noqa: E402
from sdk.compress.frames import FrameCalibration, load_frames  # noqa: E402
from sdk.runtime import discover_device  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--anneal", type=float, default=0.7)
    ap.add_argument("--feature-weight", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--all-video-frames", action="store_true",
                    help="train on every frame of the search-side videos, not the 24 sampled per video")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    split = cli_split()
    if split is None:
        return 4
    model, search, held, ev_s, ev_h = split
    train = list(search)
    if args.all_video_frames:
        videos = sorted({f.source for f in search if f.index > 0})
        train = [f for f in search if f.source not in videos] + load_frames(videos, video_frames=100_000)
    fix = {"pass": "fix_input_shape", "shape": [1, 3, 256, 416]}
    distill = {"pass": "relu_distill", "steps": args.steps, "lr": args.lr, "anneal": args.anneal,
               "feature_weight": args.feature_weight, "threads": args.threads}
    t0 = time.perf_counter()
    out: dict = {"cpu": discover_device().summary(), "config": distill,
                 "frames": {"train": len(train), "search": len(search), "held_out": len(held)}}
    with tempfile.TemporaryDirectory(prefix="edgewise-relu-") as tmp:
        # the student trains on `train`; INT8 calibrates on the search frames, as the CLI does
        student = Recipe([fix, distill]).apply(model, Path(tmp) / "student.onnx",
                                               workspace=Workspace(FrameCalibration(train, (416, 416))),
                                               work_dir=tmp)
        out["train_report"] = student.reports.get("relu_distill")
        out["train_seconds"] = round(time.perf_counter() - t0)
        int8 = Recipe([{"pass": "quantize_int8"}]).apply(student.path, Path(tmp) / "student_int8.onnx",
                                                         workspace=Workspace(FrameCalibration(search, (416, 416))),
                                                         work_dir=tmp)
        for name, p in (("float", student.path), ("int8", int8.path)):
            out[name] = {"f1_search": round(ev_s(p), 3), "f1_held_out": round(ev_h(p), 3)}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(frames_line(out["cpu"], {"train": len(train), "search": len(search), "held-out": len(held)}, split))
    print(f"student: {args.steps} steps, lr {args.lr}, anneal {args.anneal}, feature weight "
          f"{args.feature_weight}: trained in {out['train_seconds']} s")
    for name in ("float", "int8"):
        print(f"ReLU student {name:5s} at 256x416: F1 against FP32 search {out[name]['f1_search']:.3f}, "
              f"held-out {out[name]['f1_held_out']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
