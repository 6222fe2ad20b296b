"""sdk.detect: IoU, the greedy matcher and detection F1 on cases worked out by hand."""
import numpy as np
import pytest

from sdk.detect import (
    Detections,
    MatchCounts,
    box_iou,
    detection_counts,
    detection_f1,
    f1_score,
    match_counts,
    match_detections,
)
from sdk.errors import InputValidationError


def _det(boxes, classes, scores=None):
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Detections(b, np.ones(len(b)) if scores is None else np.asarray(scores), np.asarray(classes, np.int64))


def test_box_iou():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [4, 4, 4, 8]])
    assert np.allclose(box_iou(a, b), [[1.0, 1 / 3, 0.0, 0.0]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 4)
    assert box_iou([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 0.0          # two empty boxes: IoU 0, no NaN
    assert box_iou(a, b).dtype == np.float64


def test_same_place_other_class_is_a_miss_and_a_false_alarm():
    ref = _det([[0, 0, 10, 10], [5, 0, 15, 10]], [2, 2])
    cand = _det([[0, 0, 10, 10], [5, 0, 15, 10]], [2, 0])
    assert match_counts(ref, cand, 0.5) == (1, 1, 1)
    assert f1_score(1, 1, 1) == pytest.approx(0.5) and f1_score(0, 0, 0) == 1.0


def test_greedy_takes_the_highest_iou_pair_first():
    # candidate 0 overlaps both references; greedy gives it to ref 1 (IoU 0.9), so ref 0 is
    # left to candidate 1 (IoU 0.6); a score-ordered matcher would pair cand 0 with ref 0
    ref = _det([[0, 0, 10, 10], [2, 0, 12, 10]], [0, 0])
    cand = _det([[1.5, 0, 11.5, 10], [-2.5, 0, 7.5, 10]], [0, 0], scores=[0.9, 0.5])
    iou = box_iou(ref.xyxy, cand.xyxy)
    assert iou[1, 0] > iou[0, 0] > 0.5 and iou[0, 1] >= 0.5
    assert match_detections(ref, cand, 0.5).tolist() == [[1, 0], [0, 1]]
    assert match_counts(ref, cand, 0.5) == MatchCounts(2, 0, 0)


def test_each_box_once_threshold_inclusive_and_ties_by_index():
    ref = _det([[0, 0, 10, 10]], [1])
    cand = _det([[0, 0, 10, 10], [0, 0, 10, 10]], [1, 1])                # a duplicate is a false positive
    assert match_detections(ref, cand).tolist() == [[0, 0]]
    assert match_counts(ref, cand) == (1, 1, 0)
    half = _det([[0, 0, 10, 10]], [1])
    other = _det([[0, 0, 10, 5]], [1])                                   # IoU exactly 0.5
    assert match_counts(half, other, 0.5) == (1, 0, 0) and match_counts(half, other, 0.51) == (0, 1, 1)
    assert match_counts(Detections.empty(), Detections.empty()) == (0, 0, 0)
    assert match_counts(ref, Detections.empty()) == (0, 0, 1)
    with pytest.raises(InputValidationError, match=r"iou_threshold must be in \[0, 1\]"):
        match_detections(ref, cand, 2.0)


def test_f1_over_images():
    ref = [_det([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], [0, 0, 1]), Detections.empty()]
    cand = [_det([[1, 1, 10, 10], [21, 21, 40, 40], [50, 50, 60, 60], [70, 70, 80, 80]], [0, 0, 2, 2]),
            _det([[0, 0, 5, 5]], [0])]
    c = detection_counts(ref, cand)
    assert c == (2, 3, 1) and c.f1 == pytest.approx(4 / 8)
    assert detection_f1(ref, cand) == pytest.approx(0.5)
    assert detection_f1(ref[0], cand[0]) == pytest.approx(4 / 7)
    assert detection_f1([Detections.empty()], [Detections.empty()]) == 1.0
    with pytest.raises(InputValidationError, match="pair up image by image"):
        detection_counts(ref, cand[:1])
