"""Non-maximum suppression: OpenCV's ``cv2.dnn.NMSBoxes`` / ``NMSBoxesBatched``.

Semantics (those of OpenCV's ``NMSFast_``, checked against a brute-force reference in
``tests/sdk/test_detect_nms.py``): boxes are visited by score, highest first (ties in index
order); a box is kept unless its IoU with a box already kept (of the same class, unless
class-agnostic) is *greater than* ``iou_threshold``. IoU is :func:`~sdk.detect.box_iou`'s.

Two places where OpenCV alone would differ, handled here:

* ``NMSBoxesBatched`` separates classes by shifting each class's boxes by
  ``class_id * (max coordinate + 1)``. With negative coordinates (a box that sticks out of
  the image, common for YOLO heads) the shifted classes can overlap, and a box could be
  suppressed by a box *of another class*. The boxes are translated so that the smallest
  coordinate is 0 before the call, which makes the shift exact.
* OpenCV counts two zero-area boxes as identical (IoU 1), wherever they are; by
  :func:`box_iou` a zero-area box overlaps nothing. Zero-area (and inverted) boxes are
  therefore kept without entering NMS.

A score threshold, when given, keeps scores ``>= score_threshold`` (OpenCV's own is ``>`` and
must be >= 0, so OpenCV is handed each box's rank by score instead of the score: every box
enters, in the same order).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from sdk.detect.boxes import xyxy_to_xywh
from sdk.detect.detections import Detections
from sdk.errors import InputValidationError

__all__ = ["nms", "nms_indices"]


def nms_indices(xyxy: np.ndarray, confidence: np.ndarray, class_id: np.ndarray | None = None,
                iou_threshold: float = 0.45, score_threshold: float | None = None,
                max_detections: int | None = None) -> np.ndarray:
    """Indices kept, best score first. ``class_id`` None: one NMS over all boxes (class-agnostic);
    given: boxes only suppress boxes of their own class."""
    import cv2

    dnn: Any = cv2.dnn   # OpenCV's stubs ask for sequences; numpy arrays are what it takes fastest
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise InputValidationError(f"iou_threshold must be in [0, 1], but got {iou_threshold}")
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    scores = np.asarray(confidence, np.float32).reshape(-1)
    if len(scores) != len(xyxy) or (class_id is not None and len(class_id) != len(xyxy)):
        raise InputValidationError(f"nms needs one score (and class id) per box: {len(xyxy)} boxes, "
                                   f"{len(scores)} scores, {None if class_id is None else len(class_id)} class ids")
    idx = np.arange(len(xyxy))
    if score_threshold is not None:
        idx = idx[scores >= score_threshold]
    if idx.size == 0:
        return np.zeros(0, np.int64)
    wh = xyxy[idx, 2:] - xyxy[idx, :2]
    solid = (wh > 0).all(axis=1)
    flat, idx = idx[~solid], idx[solid]          # zero-area boxes overlap nothing: kept as they are
    keep = np.zeros(0, np.int64)
    if idx.size:
        boxes = xyxy[idx] - xyxy[idx].min()      # smallest coordinate 0: NMSBoxesBatched's class shift is exact
        xywh = xyxy_to_xywh(boxes)
        # OpenCV drops scores <= its threshold, which must be >= 0: it is given ranks instead
        # (n..1, by score, ties in index order), which visit the boxes in the same order
        order = np.argsort(-scores[idx], kind="stable")
        ranks = np.empty(len(idx), np.float32)
        ranks[order] = np.arange(len(idx), 0, -1, dtype=np.float32)
        if class_id is None or len(np.unique(np.asarray(class_id)[idx])) == 1:
            kept = dnn.NMSBoxes(xywh, ranks, 0.0, float(iou_threshold))
        else:
            cids = np.asarray(class_id)[idx].astype(np.int32)
            kept = dnn.NMSBoxesBatched(xywh, ranks, cids, 0.0, float(iou_threshold))
        keep = idx[np.asarray(kept, np.int64).reshape(-1)]
    keep = np.sort(np.concatenate([keep, flat]).astype(np.int64))
    keep = keep[np.argsort(-scores[keep], kind="stable")]       # best first, ties in index order
    return keep if max_detections is None else keep[: int(max_detections)]


def nms(detections: Detections, iou_threshold: float = 0.45, class_agnostic: bool = False,
        score_threshold: float | None = None, max_detections: int | None = None) -> Detections:
    """The detections kept by :func:`nms_indices`, best first."""
    keep = nms_indices(detections.xyxy, detections.confidence, None if class_agnostic else detections.class_id,
                       iou_threshold, score_threshold, max_detections)
    return detections[keep]
