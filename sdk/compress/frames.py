"""Raw camera frames for compressing detectors: loading, a held-out split, calibration at
each candidate's own input size, and the rectangular input shapes the frames call for.

A detector exported at 416x416 spends ~40% of its work on letterbox padding when it is fed
16:9 frames; a candidate with its input fixed to 256x416 does not. Such candidates can only
be calibrated and judged on the raw frames, letterboxed to *their* size, which is what
:class:`FrameCalibration` and :class:`~sdk.compress.evaluators.FrameDetectionAgreement` do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from sdk.compress.calibration import IMAGE_EXTS, VIDEO_EXTS, CalibrationData, Feeds
from sdk.compress.holdout import every_kth
from sdk.errors import DecodeError

__all__ = ["Frame", "load_frames", "split_frames", "FrameCalibration", "frame_input_shapes", "model_input_hw"]


@dataclass(frozen=True)
class Frame:
    image: np.ndarray      # HxWx3 uint8, BGR
    source: str            # the file it came from
    index: int             # frame number in that file (0 for a still)


def load_frames(paths: Iterable[str | Path], video_frames: int = 24) -> list[Frame]:
    """Images, and ``video_frames`` evenly spaced frames of every video, from files and folders
    (searched recursively). DecodeError naming the file for an image that does not decode or a
    video that yields no frame."""
    import cv2

    files: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"no such file or folder: {p}")
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS)
        elif p.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS:
            files.append(p)
        else:
            raise ValueError(f"{p}: expected an image ({', '.join(IMAGE_EXTS)}), a video "
                             f"({', '.join(VIDEO_EXTS)}) or a folder of them")
    out: list[Frame] = []
    for f in files:
        if f.suffix.lower() in VIDEO_EXTS:
            cap = cv2.VideoCapture(str(f))
            try:
                n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
                got = 0
                for idx in np.unique(np.linspace(0, max(n - 1, 0), num=max(1, min(video_frames, n or 1))).astype(int)):
                    cap.set(cv2.CAP_PROP_POS_FRAMES, int(idx))
                    ok, img = cap.read()
                    if ok and img is not None:
                        out.append(Frame(img, str(f), int(idx)))
                        got += 1
            finally:
                cap.release()
            if not got:
                raise DecodeError(f"{f.name}: no frame could be decoded from this video")
            continue
        still = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if still is None:
            raise DecodeError(f"{f.name}: not a readable image")
        out.append(Frame(still, str(f), 0))
    if not out:
        raise ValueError(f"no images or videos found in {', '.join(map(str, paths))}")
    return out


def split_frames(frames: Sequence[Frame], holdout: float) -> tuple[list[Frame], list[Frame]]:
    """(search, held-out): deterministic, and never the same moment of a video on both sides.

    With 4 or more sources, whole sources are held out (every k-th one). With fewer, the last
    ``holdout`` share of each source's frames is (neighbouring video frames are near copies,
    so interleaving would judge on what the search saw)."""
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout}")
    by_src: dict[str, list[Frame]] = {}
    for f in frames:
        by_src.setdefault(f.source, []).append(f)
    search: list[Frame] = []
    held: list[Frame] = []
    if len(by_src) >= 4:
        search_src, held_src = every_kth(sorted(by_src), holdout)
        search = [f for src in search_src for f in by_src[src]]
        held = [f for src in held_src for f in by_src[src]]
    else:
        for src in sorted(by_src):
            fs = sorted(by_src[src], key=lambda f: f.index)
            n_held = int(round(len(fs) * holdout))
            if len(fs) >= 2:
                n_held = min(max(n_held, 1), len(fs) - 1)
            else:
                n_held = 0
            search += fs[:len(fs) - n_held]
            held += fs[len(fs) - n_held:]
    if not search or not held:
        raise ValueError(f"cannot hold out {holdout:.0%} of {len(frames)} frame(s) from {len(by_src)} source(s): "
                         "give more images or a video")
    return search, held


def model_input_hw(model_path: str | Path) -> tuple[int, int]:
    """Fixed (height, width) of an NCHW model's first input; ValueError when not fixed."""
    from sdk.compress.graph_prep import load_model

    m = load_model(model_path, check=False, load_external_data=False)
    init = {i.name for i in m.graph.initializer}
    inp = next(vi for vi in m.graph.input if vi.name not in init)
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4 or not dims[2] or not dims[3]:
        raise ValueError(f"{Path(model_path).name}: input {inp.name!r} needs a fixed NCHW size for frames, got {dims}")
    return int(dims[2]), int(dims[3])


def _letterboxed(img: np.ndarray, hw: tuple[int, int], pad_value: int, scale: float) -> np.ndarray:
    from sdk.preprocess import letterbox

    out, _ = letterbox(img, hw, pad_value=pad_value)
    x = out.transpose(2, 0, 1)[None].astype(np.float32)
    return np.ascontiguousarray(x / scale if scale != 1.0 else x)


class FrameCalibration(CalibrationData):
    """Calibration feeds from raw frames, letterboxed to the input size of whichever model asks
    (:meth:`for_model`), so a candidate with a rectangular input is calibrated on what it will
    see. Iterating it yields the frames at ``default_hw``."""

    def __init__(self, frames: Sequence[np.ndarray | Frame], default_hw: tuple[int, int], *, pad_value: int = 114,
                 scale: float = 1.0, input_name: str | None = None, limit: int | None = None):
        self.images = [f.image if isinstance(f, Frame) else np.asarray(f) for f in frames]
        if not self.images:
            raise ValueError("FrameCalibration needs at least one frame, got 0")
        self.default_hw = (int(default_hw[0]), int(default_hw[1]))
        self.pad_value, self.scale = int(pad_value), float(scale)
        self.input_name = input_name
        self._by_hw: dict[tuple[int, int], list[np.ndarray]] = {}
        super().__init__(lambda: ({self._key(): x} for x in self._tensors(self.default_hw)), limit=limit,
                         name=f"{len(self.images)} frames")

    def _key(self) -> str:
        from sdk.compress.calibration import UNNAMED

        return self.input_name or UNNAMED

    def _tensors(self, hw: tuple[int, int]) -> list[np.ndarray]:
        if hw not in self._by_hw:
            self._by_hw[hw] = [_letterboxed(im, hw, self.pad_value, self.scale) for im in self.images]
        return self._by_hw[hw]

    def for_model(self, model_path: str | Path, limit: int | None = None) -> list[Feeds]:
        from sdk.compress.graph_prep import load_model

        try:
            hw = model_input_hw(model_path)
        except ValueError:
            return super().for_model(model_path, limit)
        m = load_model(model_path, check=False, load_external_data=False)
        init = {i.name for i in m.graph.initializer}
        name = next(vi.name for vi in m.graph.input if vi.name not in init)
        n = len(self.images) if self.limit is None else min(self.limit, len(self.images))
        return [{name: x} for x in self._tensors(hw)[:n][:limit]]


def frame_input_shapes(frames: Sequence[np.ndarray | Frame], model_hw: tuple[int, int], stride: int = 32
                       ) -> list[list[int]]:
    """The rectangular NCHW shapes worth trying for these frames: the model's long side kept,
    the short side cut to the frames' widest aspect ratio, rounded up to ``stride``. Empty when
    the frames are as square as the model (nothing to cut)."""
    h, w = model_hw
    ratios = [im.shape[0] / im.shape[1] for im in (f.image if isinstance(f, Frame) else f for f in frames)]
    if not ratios:
        return []
    tall, wide = max(ratios), min(ratios)
    shapes = []
    if tall <= 1.0:              # landscape frames: keep the width
        new_h = int(math.ceil(w * tall / stride) * stride)
        if new_h < h:
            shapes.append([1, 3, new_h, w])
    if wide >= 1.0:              # portrait frames: keep the height
        new_w = int(math.ceil(h / wide / stride) * stride)
        if new_w < w:
            shapes.append([1, 3, h, new_w])
    return shapes
