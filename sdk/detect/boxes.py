"""Box geometry on plain (N, 4) arrays: IoU and the layout conversions the adapters need."""
from __future__ import annotations

import numpy as np

__all__ = ["box_iou", "cxcywh_to_xyxy", "xyxy_to_xywh"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes, in float64. An inverted box has area 0;
    a pair whose union is 0 (two empty boxes) has IoU 0."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    """(N, 4+) centre x, centre y, width, height -> (N, 4) x1, y1, x2, y2."""
    half = b[:, 2:4] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def xyxy_to_xywh(b: np.ndarray) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 -> (N, 4) x, y, width, height (OpenCV's Rect layout)."""
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)
