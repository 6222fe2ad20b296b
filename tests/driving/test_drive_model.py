"""Model resolution: bundles pick their adapter from the manifest; hashes are checked."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from apps.driving_perception.model import resolve_model, verify_sha256
from sdk.bundle import Manifest, ModelEntry, save_bundle
from sdk.errors import IntegrityError


def _yolov8_like_model(path):
    """images [1,3,416,416] -> output [1, 84, 10] (constant boxes; 0 * mean(images) keeps the input)."""
    out = np.zeros((1, 84, 10), np.float32)
    out[0, :4, 0] = [208, 208, 100, 50]     # a car in the centre of the letterboxed input
    out[0, 4 + 2, 0] = 0.9
    out[0, :4, 1] = [50, 50, 20, 20]        # a kite (class 33): filtered out
    out[0, 4 + 33, 1] = 0.95
    g = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
         helper.make_node("Mul", ["m", "zero"], ["z"]),
         helper.make_node("Add", ["z", "const"], ["output0"])],
        "v8", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 416, 416])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 84, 10])],
        [numpy_helper.from_array(np.array(0, np.float32), "zero"), numpy_helper.from_array(out, "const")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_bundle_manifest_picks_the_adapter(tmp_path):
    model = _yolov8_like_model(tmp_path / "v8.onnx")
    manifest = Manifest(name="v8-test", version="1", task="detection", models={"model": ModelEntry(file="model.onnx")},
                        extra={"detector": {"adapter": "yolov8", "input_size": [416, 416], "score_threshold": 0.5}})
    save_bundle(tmp_path / "bundle", manifest, files={"model.onnx": model})
    choice = resolve_model(tmp_path / "bundle")
    assert choice.detector_options.adapter == "yolov8" and choice.bundle is not None
    with choice.detector() as det:
        dets = det(np.zeros((720, 1280, 3), np.uint8))   # scale 416/1280: box maps back x3.077
    assert dets.class_id.tolist() == [2]
    s = 1280 / 416
    assert np.allclose(dets.xyxy[0], np.array([158, 183, 258, 233]) * s, atol=0.05)


def test_plain_onnx_path_uses_yolox_and_missing_path_fails(tmp_path):
    model = _yolov8_like_model(tmp_path / "v8.onnx")
    assert resolve_model(model).detector_options.adapter == "yolox"
    with pytest.raises(FileNotFoundError, match="model not found"):
        resolve_model(tmp_path / "nope.onnx")
    with pytest.raises(IntegrityError, match="does not match"):
        verify_sha256(model, "0" * 64)


def test_default_model_comes_from_the_store_cache(yolox_path, monkeypatch):
    import shutil

    from sdk.bundle import ModelStore
    from sdk.errors import OfflineError

    monkeypatch.setenv("EDGEWISE_OFFLINE", "1")
    with pytest.raises(OfflineError):
        resolve_model(None)              # empty cache (isolated $EDGEWISE_HOME), offline: no download
    target = ModelStore().target("yolox-nano")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(yolox_path, target)  # as `edgewise pull yolox-nano` would leave it
    choice = resolve_model(None)
    assert choice.fp32_path == target and choice.detector_options.adapter == "yolox"


@pytest.mark.parametrize("hw,expected", [((720, 1280), (256, 416)), ((540, 960), (256, 416)),
                                         ((480, 640), (320, 416)), ((416, 416), (416, 416)),
                                         ((1280, 720), (416, 256))])
def test_rect_input_size(hw, expected):
    from apps.driving_perception.model import rect_input_size

    assert rect_input_size(hw) == expected


def test_rect_specialized_yolox_finds_the_same_cars(yolox_path, driving_dir, fp32_detector, tmp_path):
    import cv2

    from apps.driving_perception.detect import Detector, DetectorOptions
    from apps.driving_perception.model import YOLOX_DETECTOR, specialize_input
    from sdk.detect import match_counts

    rect = specialize_input(yolox_path, tmp_path / "rect.onnx", (256, 416))
    opts = DetectorOptions(**dict(YOLOX_DETECTOR, input_size=[256, 416]))
    with Detector.from_model_path(rect, opts) as det:
        assert det.engine.inputs[0].shape == [1, 3, 256, 416]
        for name in ("test1.jpg", "test5.jpg"):
            img = cv2.imread(str(driving_dir / "advanced_lane_lines" / "test_images" / name))
            ref, got = fp32_detector(img), det(img)
            ref, got = ref[ref.confidence > 0.5], got[got.confidence > 0.5]
            tp, fp, fn = match_counts(ref, got, 0.9)
            assert len(ref) >= 2 and (fp, fn) == (0, 0), name
