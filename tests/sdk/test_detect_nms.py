"""sdk.detect.nms (OpenCV underneath) against a brute-force greedy NMS written from its definition."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from sdk.detect import Detections, box_iou, nms, nms_indices
from sdk.errors import InputValidationError


def brute_nms(xyxy, scores, class_id, thr):
    """Visit boxes by score (ties: index order); keep one unless it overlaps a kept box of its
    class by IoU > thr."""
    order = sorted(range(len(scores)), key=lambda i: (-float(np.float32(scores[i])), i))
    kept = []
    for i in order:
        if all(not ((class_id is None or class_id[i] == class_id[k])
                    and box_iou(xyxy[i:i + 1], xyxy[k:k + 1])[0, 0] > thr) for k in kept):
            kept.append(i)
    return kept


def _random_boxes(rng, n, lo=-60.0, hi=500.0):
    xy = rng.uniform(lo, hi, (n, 2))
    wh = rng.uniform(1.0, 150.0, (n, 2))
    return np.concatenate([xy, xy + wh], 1)


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("agnostic", [False, True])
def test_nms_matches_brute_force_on_random_boxes(seed, agnostic):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    xyxy = _random_boxes(rng, n)                      # many stick out of the image (negative coordinates)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    cids = rng.integers(0, 4, n)
    thr = float(rng.choice([0.3, 0.45, 0.6]))
    got = nms_indices(xyxy, scores, None if agnostic else cids, thr)
    assert got.tolist() == brute_nms(xyxy, scores, None if agnostic else cids, thr)


def test_class_aware_with_negative_coordinates():
    # OpenCV's NMSBoxesBatched alone would let the class-1 box suppress the class-2 box here
    # (its class offset, 411 px, is smaller than the span of boxes that start at -50)
    xyxy = np.array([[-50, -50, 10, 10], [350, 350, 410, 410]], np.float64)
    scores = np.array([0.8, 0.9], np.float32)
    assert nms_indices(xyxy, scores, np.array([2, 1]), 0.3).tolist() == [1, 0]


def test_zero_area_boxes_suppress_nothing():
    xyxy = np.array([[0, 0, 10, 10], [5, 5, 5, 9], [100, 100, 100, 100], [1, 1, 10, 10]], np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert nms_indices(xyxy, scores, None, 0.45).tolist() == [0, 1, 2]


def test_score_threshold_cap_and_detections_form():
    xyxy = np.array([[0, 0, 100, 100], [5, 5, 105, 105], [2, 2, 102, 102], [300, 300, 320, 320]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.3], np.float32)
    cids = np.array([2, 2, 7, 2])
    assert nms_indices(xyxy, scores, cids, 0.45).tolist() == [0, 2, 3]     # the truck survives the car
    assert nms_indices(xyxy, scores, None, 0.45).tolist() == [0, 3]
    assert nms_indices(xyxy, scores, cids, 0.45, score_threshold=0.3).tolist() == [0, 2, 3]   # inclusive
    assert nms_indices(xyxy, scores, cids, 0.45, score_threshold=0.85).tolist() == [0]
    assert nms_indices(xyxy, scores, cids, 0.45, max_detections=2).tolist() == [0, 2]
    d = nms(Detections(xyxy, scores, cids, np.arange(4)), 0.45)
    assert d.class_id.tolist() == [2, 7, 2] and d.tracker_id.tolist() == [0, 2, 3]
    assert len(nms(Detections.empty())) == 0
    assert nms_indices(np.zeros((0, 4)), np.zeros(0), None).tolist() == []
    with pytest.raises(InputValidationError, match="one score"):
        nms_indices(xyxy, scores[:2], None)
    with pytest.raises(InputValidationError, match=r"iou_threshold must be in \[0, 1\]"):
        nms_indices(xyxy, scores, None, 1.5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-50, 400), st.integers(-50, 400), st.integers(1, 120), st.integers(1, 120),
                          st.floats(0.0, 1.0, width=32), st.integers(0, 2)), min_size=1, max_size=30),
       st.sampled_from([0.3, 0.5, 0.7]), st.booleans())
def test_nms_property_matches_brute_force(rows, thr, agnostic):
    a = np.array(rows, np.float64)
    xyxy = np.concatenate([a[:, :2], a[:, :2] + a[:, 2:4]], 1)
    scores, cids = a[:, 4].astype(np.float32), a[:, 5].astype(np.int64)
    iou = box_iou(xyxy, xyxy)
    assume((np.abs(iou - thr) > 1e-4).all())          # pairs exactly on the threshold: float32 inside OpenCV
    got = nms_indices(xyxy, scores, None if agnostic else cids, thr)
    assert got.tolist() == brute_nms(xyxy, scores, None if agnostic else cids, thr)
