"""The one result type every stage of the app takes and returns.

:class:`Detections` holds N boxes as numpy arrays (supervision-style): ``xyxy`` (N, 4) float32
in source-image pixels, ``scores`` (N,), ``class_ids`` (N,) COCO ids, and ``tracker_ids``
(N,) int64 where -1 means "not tracked". The detector fills the first three, the tracker
the fourth; warnings and the annotator only read it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# COCO ids (80-class numbering, as YOLOX/YOLOv5/YOLOv8 export them) of the road users kept.
ROAD_USER_CLASSES: dict[int, str] = {
    0: "person", 1: "bicycle", 2: "car", 3: "motorcycle",
    5: "bus", 7: "truck", 9: "traffic light", 11: "stop sign",
}
VEHICLE_CLASSES: frozenset[int] = frozenset({2, 3, 5, 7})


def class_name(class_id: int) -> str:
    return ROAD_USER_CLASSES.get(int(class_id), f"class{int(class_id)}")


def _check(name: str, arr: np.ndarray, shape_desc: str, ok: bool) -> None:
    if not ok:
        raise ValueError(f"{name} must be a np.ndarray with shape {shape_desc}, but got "
                         f"{type(arr).__name__} with shape {getattr(arr, 'shape', None)}")


@dataclass
class Detections:
    """N detections; every array has N rows. Build with :meth:`empty` when there are none."""

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    tracker_ids: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        _check("xyxy", self.xyxy, "(_, 4)",
               isinstance(self.xyxy, np.ndarray) and self.xyxy.ndim == 2 and self.xyxy.shape[1] == 4)
        n = len(self.xyxy)
        for name in ("scores", "class_ids"):
            arr = getattr(self, name)
            _check(name, arr, f"({n},)", isinstance(arr, np.ndarray) and arr.shape == (n,))
        if self.tracker_ids is None:
            self.tracker_ids = np.full(n, -1, dtype=np.int64)
        _check("tracker_ids", self.tracker_ids, f"({n},)",
               isinstance(self.tracker_ids, np.ndarray) and self.tracker_ids.shape == (n,))
        self.xyxy = self.xyxy.astype(np.float32, copy=False)
        self.scores = self.scores.astype(np.float32, copy=False)
        self.class_ids = self.class_ids.astype(np.int64, copy=False)
        self.tracker_ids = self.tracker_ids.astype(np.int64, copy=False)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index) -> "Detections":
        """Select rows with an int, a slice, an index array or a boolean mask."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(self.xyxy[index], self.scores[index], self.class_ids[index],
                          self.tracker_ids[index])

    @property
    def area(self) -> np.ndarray:
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    @property
    def bottom_centers(self) -> np.ndarray:
        """(N, 2) points where each box touches the road."""
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, self.xyxy[:, 3]], axis=1)

    def to_records(self) -> list[dict]:
        """JSON-friendly rows, for events files and the CLI."""
        return [{"xyxy": [round(float(v), 1) for v in box], "score": round(float(s), 4),
                 "class_id": int(c), "class": class_name(c),
                 "track_id": int(t) if t >= 0 else None}
                for box, s, c, t in zip(self.xyxy, self.scores, self.class_ids, self.tracker_ids)]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_f1(ref: Detections, other: Detections, iou_thr: float = 0.5) -> tuple[int, int, int]:
    """Greedy one-to-one matching by IoU (same class). Returns (true pos, false pos, false neg)
    of ``other`` against ``ref``; used to measure agreement between two detectors."""
    if len(ref) == 0 or len(other) == 0:
        return 0, len(other), len(ref)
    iou = box_iou(other.xyxy, ref.xyxy)
    iou[other.class_ids[:, None] != ref.class_ids[None, :]] = 0.0
    tp = 0
    used_o, used_r = set(), set()
    for flat in np.argsort(-iou, axis=None):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < iou_thr:
            break
        if i in used_o or j in used_r:
            continue
        used_o.add(i); used_r.add(j); tp += 1
    return tp, len(other) - tp, len(ref) - tp


def f1_score(tp: int, fp: int, fn: int) -> float:
    """F1 from counts; two empty sets agree perfectly (1.0)."""
    if tp + fp + fn == 0:
        return 1.0
    return 2 * tp / (2 * tp + fp + fn)
