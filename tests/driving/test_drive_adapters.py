"""Output adapters on synthetic tensors, NMS, class filtering, letterbox inverse."""
import numpy as np
import pytest

from apps.driving_perception.detect import Detector, DetectorOptions, make_adapter, nms
from sdk.errors import InferenceError
from sdk.preprocess import letterbox

from .conftest import FakeEngine, yolox_raw

ROAD = (0, 1, 2, 3, 5, 7, 9, 11)


def test_yolox_decode_grid_stride():
    raw = yolox_raw([(84, 44, 32, 16)], [0.9], [2], [0.8])
    boxes, scores, cids = make_adapter("yolox").decode([raw], (416, 416), None, 0.3)
    assert boxes.shape == (1, 4)
    assert np.allclose(boxes[0], [68, 36, 100, 52], atol=1e-3)
    assert scores[0] == pytest.approx(0.72) and cids[0] == 2


def test_yolox_decode_strides_16_32_and_sigmoid():
    raw = np.full((1, 3549, 85), -10.0, np.float32)
    a32 = 52 * 52 + 26 * 26 + 3 * 13 + 4          # stride-32 cell (x=4, y=3)
    raw[0, a32, :4] = [0.5, 0.5, np.log(2.0), np.log(3.0)]
    raw[0, a32, 4], raw[0, a32, 5 + 7] = 4.0, 3.0  # logits
    boxes, scores, cids = make_adapter("yolox", {"apply_sigmoid": True}).decode([raw], (416, 416), ROAD, 0.5)
    cx, cy = 4.5 * 32, 3.5 * 32
    assert np.allclose(boxes[0], [cx - 32, cy - 48, cx + 32, cy + 48], atol=1e-3)
    assert scores[0] == pytest.approx(1 / (1 + np.exp(-4)) / (1 + np.exp(-3)), rel=1e-5) and cids[0] == 7


def test_yolox_rejects_wrong_shape():
    with pytest.raises(InferenceError, match=r"expected \[1, 3549, 5\+C\].*got \[1, 100, 85\]"):
        make_adapter("yolox").decode([np.zeros((1, 100, 85), np.float32)], (416, 416))


def test_yolov5_and_yolov8_and_boxes_adapters():
    n = 5
    v5 = np.zeros((1, n, 85), np.float32)
    v5[0, 1, :4] = [100, 50, 40, 20]
    v5[0, 1, 4], v5[0, 1, 5 + 0] = 0.8, 0.9
    b, s, c = make_adapter("yolov5").decode([v5], (416, 416), ROAD, 0.25)
    assert np.allclose(b, [[80, 40, 120, 60]]) and s[0] == pytest.approx(0.72) and c[0] == 0

    v8 = np.zeros((1, 84, n), np.float32)
    v8[0, :4, 3] = [200, 100, 20, 60]
    v8[0, 4 + 2, 3] = 0.6
    b, s, c = make_adapter("yolov8").decode([v8], (416, 416), ROAD, 0.25)
    assert np.allclose(b, [[190, 70, 210, 130]]) and c[0] == 2 and s[0] == pytest.approx(0.6)

    boxes = np.array([[[0.1, 0.2, 0.3, 0.4], [0, 0, 0.5, 0.5]]], np.float32)
    scores = np.zeros((1, 2, 80), np.float32)
    scores[0, 0, 5] = 0.7
    scores[0, 1, 4] = 0.99   # airplane: not a road user
    b, s, c = make_adapter("boxes", {"normalized": True}).decode([boxes, scores], (400, 800), ROAD, 0.3)
    assert np.allclose(b, [[80, 80, 240, 160]]) and c.tolist() == [5]
    b, s, c = make_adapter("boxes", {"normalized": True}).decode([boxes, scores], (400, 800), None, 0.3)
    assert sorted(c.tolist()) == [4, 5]


def test_unknown_adapter_and_bad_option():
    with pytest.raises(ValueError, match="unknown detector adapter 'ssd'"):
        make_adapter("ssd")
    with pytest.raises(ValueError):
        make_adapter("yolox", {"strid": [8]})


def test_nms_per_class_and_agnostic():
    xyxy = np.array([[0, 0, 100, 100], [5, 5, 105, 105], [2, 2, 102, 102]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    cids = np.array([2, 2, 7])
    assert nms(xyxy, scores, cids, 0.3, 0.45).tolist() == [0, 2]   # truck survives the car
    assert nms(xyxy, scores, None, 0.3, 0.45).tolist() == [0]
    assert nms(xyxy, scores, cids, 0.85, 0.45).tolist() == [0]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0), None, 0.3, 0.45).tolist() == []


def test_letterbox_inverse_is_exact():
    img = np.zeros((720, 1280, 3), np.uint8)
    boxed, t = letterbox(img, (416, 416), pad_value=114)
    assert boxed.shape == (416, 416, 3) and (boxed[300:, :, :] == 114).all()   # padded bottom (top-left placement)
    boxes = np.array([[0, 0, 1280, 720], [100.25, 200.5, 640.75, 500.125]])
    back = t.to_original(t.to_letterboxed(boxes))
    assert np.allclose(back, boxes, atol=1e-6)
    assert np.allclose(t.to_original(np.array([[0, 0, 416, 234]])), [[0, 0, 1280, 720]], atol=1e-6)


def test_detector_maps_back_filters_classes_and_rejects_nan():
    # a car at letterboxed (84, 44) and an airplane; the frame is 1280x720 -> scale 416/1280
    raw = yolox_raw([(84, 44, 32, 16), (200, 100, 40, 40)], [0.9, 0.95], [2, 4], [0.8, 0.9])
    det = Detector(FakeEngine(lambda n: [raw]), DetectorOptions())
    out = det(np.zeros((720, 1280, 3), np.uint8))
    assert out.class_ids.tolist() == [2]
    assert np.allclose(out.xyxy[0], np.array([68, 36, 100, 52]) * 1280 / 416, atol=1e-2)
    assert set(det.timings) == {"pre", "model", "post"}
    bad = raw.copy()
    bad[0, 0, 0] = np.nan
    det = Detector(FakeEngine(lambda n: [bad]), DetectorOptions())
    with pytest.raises(InferenceError, match="non-finite"):
        det(np.zeros((720, 1280, 3), np.uint8))
    with pytest.raises(ValueError, match=r"BGR uint8 image of shape \(H, W, 3\)"):
        det(np.zeros((720, 1280), np.uint8))
