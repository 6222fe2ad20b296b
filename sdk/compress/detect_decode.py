"""Decoding raw detector outputs into boxes, for the detection-agreement evaluator.

``YoloxDecoder`` turns YOLOX's raw ``[1, N, 5 + classes]`` output (grid offsets, log sizes,
objectness and class logits already through sigmoid) into ``Detections`` in input-image
pixels: grid + stride decode, score = objectness x class score, per-class NMS with
``cv2.dnn.NMSBoxes``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np


@dataclass
class Detections:
    """``boxes`` [N, 4] xyxy float32, ``scores`` [N], ``classes`` [N] int."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def nms_per_class(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, score_thr: float,
                  nms_thr: float, max_det: int = 300) -> Detections:
    import cv2

    keep_all = []
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        xywh = np.column_stack([boxes[idx, 0], boxes[idx, 1], boxes[idx, 2] - boxes[idx, 0],
                                boxes[idx, 3] - boxes[idx, 1]]).astype(np.float32)
        kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores[idx].astype(float).tolist(), score_thr, nms_thr)
        keep_all.extend(idx[np.asarray(kept, dtype=int).reshape(-1)])
    keep = np.asarray(sorted(keep_all, key=lambda i: -scores[i])[:max_det], dtype=int)
    if keep.size == 0:
        return Detections.empty()
    return Detections(boxes[keep].astype(np.float32), scores[keep].astype(np.float32), classes[keep].astype(np.int64))


class YoloxDecoder:
    """Callable ``outputs -> Detections`` for YOLOX ONNX exports (``decode_in_inference=False``)."""

    def __init__(self, input_size: tuple[int, int] = (416, 416), strides: Sequence[int] = (8, 16, 32),
                 score_thr: float = 0.3, nms_thr: float = 0.45):
        self.input_size = tuple(input_size)
        self.strides = tuple(strides)
        self.score_thr, self.nms_thr = score_thr, nms_thr
        grids, expanded = [], []
        h, w = self.input_size
        for s in self.strides:
            hs, ws = h // s, w // s
            xv, yv = np.meshgrid(np.arange(ws), np.arange(hs))
            grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
            expanded.append(np.full((hs * ws, 1), s))
        self._grid = np.concatenate(grids).astype(np.float32)
        self._stride = np.concatenate(expanded).astype(np.float32)

    def __call__(self, outputs: Mapping[str, np.ndarray] | Sequence[np.ndarray] | np.ndarray) -> Detections:
        raw = _first(outputs)
        pred = np.asarray(raw, dtype=np.float32).reshape(-1, raw.shape[-1])
        if pred.shape[0] != self._grid.shape[0]:
            raise ValueError(f"YOLOX output has {pred.shape[0]} anchors, expected {self._grid.shape[0]} for input "
                             f"{self.input_size} and strides {self.strides}")
        xy = (pred[:, :2] + self._grid) * self._stride
        wh = np.exp(np.clip(pred[:, 2:4], -20, 20)) * self._stride
        cls = pred[:, 5:].argmax(1)
        score = pred[:, 4] * pred[np.arange(len(pred)), 5 + cls]
        m = score >= self.score_thr
        if not m.any():
            return Detections.empty()
        boxes = np.concatenate([xy[m] - wh[m] / 2, xy[m] + wh[m] / 2], 1)
        return nms_per_class(boxes, score[m], cls[m], self.score_thr, self.nms_thr)


def _first(outputs: Any) -> np.ndarray:
    if isinstance(outputs, Mapping):
        return next(iter(outputs.values()))
    if isinstance(outputs, (list, tuple)):
        return outputs[0]
    return outputs


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match_counts(ref: Detections, cand: Detections, iou_thr: float = 0.5) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of ``cand`` against ``ref``:
    greedy per class, highest IoU pair first, each box matched at most once."""
    tp = 0
    for c in np.union1d(ref.classes, cand.classes):
        r, k = ref.boxes[ref.classes == c], cand.boxes[cand.classes == c]
        iou = box_iou(r, k)
        while iou.size and iou.max() >= iou_thr:
            i, j = np.unravel_index(int(iou.argmax()), iou.shape)
            tp += 1
            iou[i, :] = -1
            iou[:, j] = -1
    return tp, len(cand) - tp, len(ref) - tp
