"""The YOLOX-nano benchmarks' frames: the README's driving clips and stills, split as the CLI
splits them (``split_frames(..., 0.4)``: whole files held out), and F1 evaluators against the
FP32 model on each side. Run alone, it prints which file went to which side.

    .venv/bin/python benchmarks/yolox_frames.py
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sdk.compress import FrameDetectionAgreement  # noqa: E402
from sdk.compress.frames import Frame, load_frames, split_frames  # noqa: E402

SHARED = REPO.parent / "shared"
DRIVING = SHARED / "data" / "driving"
MODEL = SHARED / "models" / "yolox_nano_coco_416.onnx"


class Split(NamedTuple):
    model: Path
    search: list[Frame]
    held: list[Frame]
    ev_search: FrameDetectionAgreement     # F1 against FP32 on the search frames
    ev_held: FrameDetectionAgreement       # ... and on the held-out ones


def cli_split() -> Split | None:
    """The split, or None (after saying what is missing) when ../shared is absent."""
    if not MODEL.exists():
        print(f"needs {MODEL} (../shared)", file=sys.stderr)
        return None
    frames = load_frames([DRIVING / "lanelines_p1", DRIVING / "advanced_lane_lines" / "test_images",
                          DRIVING / "vehicle_detection"], video_frames=24)
    search, held = split_frames(frames, 0.4)
    return Split(MODEL, search, held, FrameDetectionAgreement(MODEL, [f.image for f in search]),
                 FrameDetectionAgreement(MODEL, [f.image for f in held]))


def frames_line(cpu: str, sides: dict[str, int], s: Split) -> str:
    """The first line the benchmarks print: CPU, frames per side, FP32 detections on each."""
    counts = " / ".join(f"{n} {side}" for side, n in sides.items())
    return (f"CPU: {cpu}; frames: {counts} ({sum(len(d) for d in s.ev_search.reference)} / "
            f"{sum(len(d) for d in s.ev_held.reference)} FP32 detections)")


def main() -> int:
    s = cli_split()
    if s is None:
        return 4
    for side, frames, ev in (("search", s.search, s.ev_search), ("held-out", s.held, s.ev_held)):
        files = sorted({Path(f.source).name for f in frames})
        print(f"{side}: {len(frames)} frames, {sum(len(d) for d in ev.reference)} FP32 detections, "
              f"from {', '.join(files)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
