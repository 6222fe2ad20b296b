"""sdk.detect adapters on small constructed outputs, the registry, and the Decoder."""
import numpy as np
import pytest
from pydantic import ValidationError

from sdk.detect import (
    ADAPTERS,
    Adapter,
    DecodeOptions,
    Decoder,
    Detections,
    YoloxDecoder,
    get_adapter,
    register_adapter,
)
from sdk.errors import InferenceError, OutputLayoutError

ROAD = (0, 1, 2, 3, 5, 7, 9, 11)


def yolox_raw(boxes_cxcywh=(), obj=(), cls=(), scores=(), hw=(416, 416), n_classes: int = 80) -> np.ndarray:
    """A YOLOX raw output [1, A, 5+C] with stride-8 anchors set for the given boxes."""
    gw = hw[1] // 8
    a_total = sum((hw[0] // s) * (hw[1] // s) for s in (8, 16, 32))
    out = np.zeros((1, a_total, 5 + n_classes), np.float32)
    for (cx, cy, w, h), o, c, s in zip(boxes_cxcywh, obj, cls, scores, strict=True):
        gx, gy = int(cx // 8), int(cy // 8)
        a = gy * gw + gx
        out[0, a, 0:4] = [cx / 8 - gx, cy / 8 - gy, np.log(w / 8), np.log(h / 8)]
        out[0, a, 4], out[0, a, 5 + c] = o, s
    return out


def test_yolox_decode_grid_stride():
    raw = yolox_raw([(84, 44, 32, 16)], [0.9], [2], [0.8])
    d = get_adapter("yolox").decode([raw], (416, 416), None, 0.3)
    assert isinstance(d, Detections) and d.xyxy.shape == (1, 4)
    assert np.allclose(d.xyxy[0], [68, 36, 100, 52], atol=1e-3)
    assert d.confidence[0] == pytest.approx(0.72) and d.class_id[0] == 2


def test_yolox_decode_strides_16_32_and_sigmoid():
    raw = np.full((1, 3549, 85), -10.0, np.float32)
    a32 = 52 * 52 + 26 * 26 + 3 * 13 + 4          # stride-32 cell (x=4, y=3)
    raw[0, a32, :4] = [0.5, 0.5, np.log(2.0), np.log(3.0)]
    raw[0, a32, 4], raw[0, a32, 5 + 7] = 4.0, 3.0  # logits
    d = get_adapter("yolox", {"apply_sigmoid": True}).decode([raw], (416, 416), ROAD, 0.5)
    cx, cy = 4.5 * 32, 3.5 * 32
    assert np.allclose(d.xyxy[0], [cx - 32, cy - 48, cx + 32, cy + 48], atol=1e-3)
    assert d.confidence[0] == pytest.approx(1 / (1 + np.exp(-4)) / (1 + np.exp(-3)), rel=1e-5) and d.class_id[0] == 7


def test_yolox_rectangular_input_and_wrong_shape():
    raw = yolox_raw([(300, 100, 40, 20)], [0.9], [0], [0.9], hw=(256, 416))
    d = get_adapter("yolox").decode([raw], (256, 416), None, 0.3)
    assert np.allclose(d.xyxy[0], [280, 90, 320, 110], atol=1e-3)
    with pytest.raises(OutputLayoutError, match=r"expected \[1, 3549, 5\+C\].*got \[1, 100, 85\]"):
        get_adapter("yolox").decode([np.zeros((1, 100, 85), np.float32)], (416, 416))
    with pytest.raises(InferenceError, match="expected 1 output"):         # OutputLayoutError is an InferenceError
        get_adapter("yolox").decode([], (416, 416))


def test_yolov5_yolov8_and_boxes_adapters():
    n = 5
    v5 = np.zeros((1, n, 85), np.float32)
    v5[0, 1, :4] = [100, 50, 40, 20]
    v5[0, 1, 4], v5[0, 1, 5 + 0] = 0.8, 0.9
    d = get_adapter("yolov5").decode([v5], (416, 416), ROAD, 0.25)
    assert np.allclose(d.xyxy, [[80, 40, 120, 60]]) and d.confidence[0] == pytest.approx(0.72) and d.class_id[0] == 0

    v8 = np.zeros((1, 84, n), np.float32)
    v8[0, :4, 3] = [200, 100, 20, 60]
    v8[0, 4 + 2, 3] = 0.6
    d = get_adapter("yolov8").decode([v8], (416, 416), ROAD, 0.25)
    assert np.allclose(d.xyxy, [[190, 70, 210, 130]]) and d.class_id[0] == 2 and d.confidence[0] == pytest.approx(0.6)
    with pytest.raises(OutputLayoutError, match=r"yolov5 adapter expected \[1, N, 5\+C\], got \[1, 5, 5\]"):
        get_adapter("yolov5").decode([np.zeros((1, 5, 5), np.float32)], (416, 416))
    with pytest.raises(OutputLayoutError, match=r"yolov8 adapter expected \[1, 4\+C, N\]"):
        get_adapter("yolov8").decode([np.zeros((1, 3, 7), np.float32)], (416, 416))

    boxes = np.array([[[0.1, 0.2, 0.3, 0.4], [0, 0, 0.5, 0.5]]], np.float32)
    scores = np.zeros((1, 2, 80), np.float32)
    scores[0, 0, 5] = 0.7
    scores[0, 1, 4] = 0.99   # airplane: not a road user
    d = get_adapter("boxes", {"normalized": True}).decode([boxes, scores], (400, 800), ROAD, 0.3)
    assert np.allclose(d.xyxy, [[80, 80, 240, 160]]) and d.class_id.tolist() == [5]
    d = get_adapter("boxes", {"normalized": True}).decode([boxes, scores], (400, 800), None, 0.3)
    assert sorted(d.class_id.tolist()) == [4, 5]
    # one score per box + a labels output, centre format in pixels
    cxcywh = np.array([[[50, 50, 20, 10]]], np.float32)
    d = get_adapter("boxes", {"box_format": "cxcywh"}).decode([cxcywh, np.array([[0.8]]), np.array([[3]])],
                                                               (100, 100))
    assert np.allclose(d.xyxy, [[40, 45, 60, 55]]) and d.class_id.tolist() == [3]
    with pytest.raises(OutputLayoutError, match="2 boxes but scores for 3"):
        get_adapter("boxes").decode([boxes, np.zeros((1, 3, 80), np.float32)], (400, 800))


def test_registry_unknown_name_bad_option_and_a_new_adapter():
    assert {"yolox", "yolov5", "yolov8", "boxes"} <= set(ADAPTERS)
    with pytest.raises(ValueError, match="unknown detector adapter 'ssd'"):
        get_adapter("ssd")
    with pytest.raises(ValidationError):
        get_adapter("yolox", {"strid": [8]})

    @register_adapter
    class Corners(Adapter):        # boxes + score in one [N, 5] output, class 0
        name = "test-corners"

        def decode(self, outputs, input_hw, classes=None, min_score=0.0):
            out = np.asarray(outputs[0]).reshape(-1, 5)
            keep = out[:, 4] >= min_score
            return Detections(out[keep, :4], out[keep, 4], np.zeros(int(keep.sum()), np.int64))

    try:
        dec = Decoder((10, 10), DecodeOptions(adapter="test-corners", score_threshold=0.5))
        d = dec(np.array([[0, 0, 4, 4, 0.9], [0, 0, 4, 4.2, 0.8], [5, 5, 9, 9, 0.4]], np.float32))
        assert d.confidence.tolist() == pytest.approx([0.9])                  # NMS took the duplicate
    finally:
        ADAPTERS.pop("test-corners")


def test_yolox_decoder_nms_and_caps():
    # two cars (IoU 0.6), a truck over the first car (IoU 0.6), a faint car elsewhere
    raw = yolox_raw([(84, 44, 32, 16), (92, 44, 32, 16), (84, 48, 32, 16), (300, 300, 50, 50)],
                    [0.9, 0.9, 0.9, 0.9], [2, 2, 7, 2], [0.9, 0.8, 0.7, 0.2])
    d = YoloxDecoder((416, 416))({"output": raw})
    assert d.class_id.tolist() == [2, 7] and d.confidence.tolist() == pytest.approx([0.81, 0.63])
    dec = Decoder((416, 416), DecodeOptions(class_agnostic_nms=True))
    assert dec([raw]).class_id.tolist() == [2]
    dec = Decoder((416, 416), DecodeOptions(score_threshold=0.1, max_detections=1))
    assert len(dec(raw)) == 1 and len(dec.candidates(raw)) == 4
    with pytest.raises(ValueError, match="anchors"):                   # OutputLayoutError is a ValueError too
        YoloxDecoder((64, 64))({"output": raw})
    with pytest.raises(ValueError, match="input_size must be"):
        Decoder((0, 416))
