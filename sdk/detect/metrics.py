"""Matching two sets of detections and the detection F1 built on it.

:func:`match_detections` is a greedy one-to-one matcher: among all (reference, candidate)
pairs of the same class with IoU >= ``iou_threshold``, the pair of highest IoU is matched
first (ties: lowest reference index, then lowest candidate index), and each box is matched
at most once. :func:`detection_counts` sums true positives (matched pairs), false positives
(unmatched candidates) and false negatives (unmatched reference boxes) over images, and
:func:`detection_f1` is ``2 tp / (2 tp + fp + fn)``: 1.0 when neither side has a box.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

import numpy as np

from sdk.detect.boxes import box_iou
from sdk.detect.detections import Detections
from sdk.errors import InputValidationError

__all__ = ["MatchCounts", "match_detections", "match_counts", "detection_counts", "detection_f1", "f1_score"]


class MatchCounts(NamedTuple):
    """True positives, false positives, false negatives (of a candidate against a reference)."""

    tp: int
    fp: int
    fn: int

    @property
    def f1(self) -> float:
        return f1_score(self.tp, self.fp, self.fn)


def f1_score(tp: int, fp: int, fn: int) -> float:
    """F1 from counts; two empty sets agree perfectly (1.0)."""
    if tp + fp + fn == 0:
        return 1.0
    return 2 * tp / (2 * tp + fp + fn)


def match_detections(reference: Detections, candidate: Detections, iou_threshold: float = 0.5) -> np.ndarray:
    """(K, 2) matched pairs ``[reference index, candidate index]``, in the order matched."""
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise InputValidationError(f"iou_threshold must be in [0, 1], but got {iou_threshold}")
    if len(reference) == 0 or len(candidate) == 0:
        return np.zeros((0, 2), np.int64)
    iou = box_iou(reference.xyxy, candidate.xyxy)
    iou[reference.class_id[:, None] != candidate.class_id[None, :]] = -1.0
    rows, cols = np.nonzero(iou >= iou_threshold)        # row-major: ties by reference, then candidate index
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_r = np.zeros(len(reference), bool)
    used_c = np.zeros(len(candidate), bool)
    pairs = []
    for k in order:
        i, j = rows[k], cols[k]
        if not (used_r[i] or used_c[j]):
            used_r[i] = used_c[j] = True
            pairs.append((i, j))
    return np.asarray(pairs, np.int64).reshape(-1, 2)


def match_counts(reference: Detections, candidate: Detections, iou_threshold: float = 0.5) -> MatchCounts:
    """:class:`MatchCounts` of ``candidate`` against ``reference`` on one image."""
    tp = len(match_detections(reference, candidate, iou_threshold))
    return MatchCounts(tp, len(candidate) - tp, len(reference) - tp)


def detection_counts(references: Iterable[Detections], candidates: Iterable[Detections],
                     iou_threshold: float = 0.5) -> MatchCounts:
    """:class:`MatchCounts` summed over images (the two sequences pair up image by image)."""
    refs, cands = list(references), list(candidates)
    if len(refs) != len(cands):
        raise InputValidationError(f"references and candidates must pair up image by image, but got "
                                   f"{len(refs)} and {len(cands)} images")
    tp = fp = fn = 0
    for r, c in zip(refs, cands, strict=True):
        a, b, d = match_counts(r, c, iou_threshold)
        tp, fp, fn = tp + a, fp + b, fn + d
    return MatchCounts(tp, fp, fn)


def detection_f1(references: Iterable[Detections] | Detections, candidates: Iterable[Detections] | Detections,
                 iou_threshold: float = 0.5) -> float:
    """F1 of ``candidates`` against ``references`` over all images (one image: pass two Detections)."""
    if isinstance(references, Detections) and isinstance(candidates, Detections):
        return match_counts(references, candidates, iou_threshold).f1
    return detection_counts(references, candidates, iou_threshold).f1  # type: ignore[arg-type]
