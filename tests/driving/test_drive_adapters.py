"""The app's detector on synthetic tensors: class filtering, letterbox inverse, names, NaN guard
(the adapters and NMS themselves: tests/sdk/test_detect_*.py)."""
import numpy as np
import pytest

from apps.driving_perception.detect import Detector, DetectorOptions
from sdk.errors import InferenceError
from sdk.preprocess import letterbox

from .conftest import FakeEngine, yolox_raw


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
    assert out.class_id.tolist() == [2] and out.to_records()[0]["class"] == "car"
    assert np.allclose(out.xyxy[0], np.array([68, 36, 100, 52]) * 1280 / 416, atol=1e-2)
    assert set(det.timings) == {"pre", "model", "post"}
    bad = raw.copy()
    bad[0, 0, 0] = np.nan
    det = Detector(FakeEngine(lambda n: [bad]), DetectorOptions())
    with pytest.raises(InferenceError, match="non-finite"):
        det(np.zeros((720, 1280, 3), np.uint8))
    with pytest.raises(ValueError, match=r"BGR uint8 image of shape \(H, W, 3\)"):
        det(np.zeros((720, 1280), np.uint8))
