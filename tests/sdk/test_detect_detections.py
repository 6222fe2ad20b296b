"""sdk.detect.Detections: validated construction, indexing, merge, records."""
import numpy as np
import pytest

from sdk.detect import Detections
from sdk.errors import InputValidationError


def _d(n=3, tracked=False, data=None):
    xyxy = np.arange(n * 4, dtype=np.float64).reshape(n, 4)
    xyxy[:, 2:] += 10
    return Detections(xyxy, np.linspace(0.9, 0.3, n), np.arange(n) % 2,
                      np.arange(n) + 10 if tracked else None, data or {})


def test_fields_are_cast_and_tracker_id_optional():
    d = Detections(np.zeros((2, 4)), np.ones(2), np.array([2, 0]))
    assert len(d) == 2 and d.tracker_id is None and d.data == {}
    assert d.xyxy.dtype == np.float32 and d.confidence.dtype == np.float32 and d.class_id.dtype == np.int64
    d = Detections([[0, 0, 1, 1]], [0.5], [3], [7], {"extra": [1.5]})
    assert d.tracker_id.dtype == np.int64 and d["extra"].tolist() == [1.5]
    e = Detections.empty()
    assert len(e) == 0 and e.is_empty() and e.xyxy.shape == (0, 4)


@pytest.mark.parametrize("args, match", [
    ((np.zeros(3), np.ones(1), np.zeros(1, int)),
     r"xyxy must be a np.ndarray with shape \(_, 4\), but got shape \(3,\)"),
    ((np.zeros((2, 5)), np.ones(2), np.zeros(2, int)), r"xyxy .* \(_, 4\), but got shape \(2, 5\)"),
    ((np.zeros((2, 4), bool), np.ones(2), np.zeros(2, int)), r"xyxy must hold real numbers, but got .* dtype bool"),
    ((np.zeros((2, 4)), np.ones(3), np.zeros(2, int)), r"confidence must be .* shape \(2,\), but got shape \(3,\)"),
    ((np.zeros((2, 4)), np.ones((2, 1)), np.zeros(2, int)), r"confidence .* \(2,\), but got shape \(2, 1\)"),
    ((np.zeros((2, 4)), np.ones(2), np.zeros(2)), r"class_id must hold integers, but got .* dtype float64"),
    ((np.zeros((2, 4)), np.ones(2), np.zeros(2, int), np.zeros(1, int)), r"tracker_id .* \(2,\), but got shape \(1,\)"),
    ((np.zeros((2, 4)), np.ones(2), np.zeros(2, int), np.zeros(2)), r"tracker_id must hold integers"),
    ((np.zeros((2, 4)), np.ones(2), np.zeros(2, int), None, {"k": np.ones(3)}), r"data\['k'\] must have 2 rows"),
    ((np.zeros((2, 4)), np.ones(2), np.zeros(2, int), None, [1, 2]), r"data must be a dict"),
    (([[0, 0, 1], [0, 0, 1, 1]], [1.0, 1.0], [0, 0]), r"xyxy must be a np.ndarray"),
    ((np.zeros((1, 4)), ["a"], [0]), r"confidence must hold real numbers, but got .* dtype <U1"),
])
def test_validation_errors_say_what_was_expected_and_found(args, match):
    with pytest.raises(InputValidationError, match=match):
        Detections(*args)
    with pytest.raises(ValueError):   # an InputValidationError is a ValueError too
        Detections(*args)


def test_indexing_int_slice_mask_array_and_string():
    d = _d(4, tracked=True, data={"tag": np.array(["a", "b", "c", "d"])})
    one = d[1]
    assert isinstance(one, Detections) and len(one) == 1 and one.tracker_id.tolist() == [11]
    assert d[-1]["tag"].tolist() == ["d"]
    assert d[1:3].class_id.tolist() == [1, 0] and d[1:3]["tag"].tolist() == ["b", "c"]
    m = d[d.confidence > 0.5]
    assert len(m) == 2 and m.tracker_id.tolist() == [10, 11]
    assert d[[3, 0]].tracker_id.tolist() == [13, 10] and d[np.array([2])]["tag"].tolist() == ["c"]
    assert len(d[[]]) == 0 and len(d[np.zeros(4, bool)]) == 0
    assert _d(2)[0].tracker_id is None
    with pytest.raises(IndexError, match="out of range for 4"):
        d[4]
    with pytest.raises(IndexError, match=r"boolean mask must have shape \(4,\), but got \(3,\)"):
        d[np.array([True, False, True])]
    with pytest.raises(IndexError, match="integer indices"):
        d[np.array([0.5])]
    with pytest.raises(KeyError, match="no data array 'nope'"):
        d["nope"]


def test_merge_concatenates_and_reconciles_tracker_ids():
    a, b = _d(2, tracked=True), _d(3)
    m = Detections.merge([a, Detections.empty(), b])
    assert len(m) == 5 and m.tracker_id.tolist() == [10, 11, -1, -1, -1]
    assert m.xyxy[2:].tolist() == b.xyxy.tolist() and m.confidence[:2].tolist() == a.confidence.tolist()
    assert Detections.merge([_d(1), _d(2)]).tracker_id is None
    assert len(Detections.merge([])) == 0 and Detections.merge([Detections.empty()]) == Detections.empty()
    with_data = Detections.merge([_d(1, data={"k": [1]}), _d(2, data={"k": [2, 3]})])
    assert with_data["k"].tolist() == [1, 2, 3]
    with pytest.raises(InputValidationError, match="same data keys"):
        Detections.merge([_d(1, data={"k": [1]}), _d(1)])


def test_replace_map_equality_geometry_records():
    d = _d(2)
    t = d.replace(tracker_id=np.array([5, -1]))
    assert t.tracker_id.tolist() == [5, -1] and d.tracker_id is None
    with pytest.raises(InputValidationError, match="tracker_id"):
        d.replace(tracker_id=np.array([1]))
    moved = d.map_xyxy(lambda b: b * 2)
    assert moved.xyxy.tolist() == (d.xyxy * 2).tolist() and moved.class_id.tolist() == d.class_id.tolist()
    assert d == _d(2) and d != t and d != moved
    box = Detections(np.array([[0, 0, 10, 20], [5, 5, 15, 15], [4, 4, 2, 2]], float), np.ones(3), np.zeros(3, int))
    assert box.area.tolist() == [200.0, 100.0, 0.0]
    assert box.bottom_centers.tolist() == [[5.0, 20.0], [10.0, 15.0], [3.0, 2.0]]
    recs = t.to_records(class_names=lambda c: f"c{c}!")
    assert recs[0] == {"xyxy": [0.0, 1.0, 12.0, 13.0], "score": 0.9, "class_id": 0, "class": "c0!", "track_id": 5}
    assert recs[1]["track_id"] is None and d.to_records()[1]["class"] == "class1"
