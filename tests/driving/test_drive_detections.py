"""The canonical Detections type, IoU and agreement counting."""
import numpy as np
import pytest

from apps.driving_perception.detections import Detections, box_iou, f1_score, match_f1


def test_detections_validates_shapes():
    d = Detections(np.zeros((2, 4)), np.ones(2), np.array([2, 0]))
    assert len(d) == 2 and d.tracker_ids.tolist() == [-1, -1]
    assert d.xyxy.dtype == np.float32 and d.class_ids.dtype == np.int64
    with pytest.raises(ValueError, match=r"xyxy must be .* shape \(_, 4\), but got .* \(3,\)"):
        Detections(np.zeros(3), np.ones(1), np.zeros(1))
    with pytest.raises(ValueError, match="scores"):
        Detections(np.zeros((2, 4)), np.ones(3), np.zeros(2))
    with pytest.raises(ValueError, match="tracker_ids"):
        Detections(np.zeros((2, 4)), np.ones(2), np.zeros(2), np.zeros(1))


def test_detections_indexing_and_records():
    d = Detections(np.array([[0, 0, 10, 20], [5, 5, 15, 15]], float), np.array([0.9, 0.4]), np.array([2, 0]),
                   np.array([7, -1]))
    sub = d[d.scores > 0.5]
    assert len(sub) == 1 and sub.tracker_ids[0] == 7
    assert d[1].class_ids.tolist() == [0]
    assert d.area.tolist() == [200.0, 100.0]
    assert d.bottom_centers.tolist() == [[5.0, 20.0], [10.0, 15.0]]
    recs = d.to_records()
    assert recs[0]["class"] == "car" and recs[0]["track_id"] == 7 and recs[1]["track_id"] is None
    assert len(Detections.empty()) == 0


def test_box_iou_and_f1():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert np.allclose(box_iou(a, b), [[1.0, 1 / 3, 0.0]])
    ref = Detections(b[:2].astype(float), np.ones(2), np.array([2, 2]))
    cand = Detections(np.array([[0, 0, 10, 10], [5, 0, 15, 10]], float), np.ones(2), np.array([2, 0]))
    assert match_f1(ref, cand, 0.5) == (1, 1, 1)   # second box: same place, other class
    assert f1_score(1, 1, 1) == pytest.approx(0.5)
    assert f1_score(0, 0, 0) == 1.0
