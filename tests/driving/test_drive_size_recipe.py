"""The committed size recipe for YOLOX-nano: >= 4x smaller, int4 where it says, and the
detections on real frames still agree with FP32 (F1 >= 0.95, the issue's budget)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from sdk.compress import CalibrationData, FrameDetectionAgreement, Recipe, YoloxDecoder
from sdk.compress.calibration import iter_images
from sdk.preprocess import letterbox

RECIPE = Path(__file__).resolve().parents[2] / "apps" / "driving_perception" / "recipes" / "yolox_nano_size.yaml"


def _frames(shared: Path):
    d = shared / "data" / "driving"
    stills = sorted((d / "lanelines_p1" / "test_images").glob("*.jpg")) + \
        sorted((d / "advanced_lane_lines" / "test_images").glob("*.jpg"))
    videos = [d / "lanelines_p1" / "test_videos" / "solidWhiteRight.mp4", d / "vehicle_detection" / "test_video.mp4"]
    if not stills or not all(v.is_file() for v in videos):
        pytest.skip(f"driving frames not found under {d}")
    return list(iter_images(stills)), list(iter_images(videos, video_frames=32))


@pytest.mark.slow
def test_size_recipe_is_4x_smaller_and_keeps_detections(yolox_path, shared_dir, tmp_path):
    stills, video = _frames(shared_dir)

    def tensor(img):
        x, _ = letterbox(img, (416, 416), pad_value=114)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)

    calib = CalibrationData([{"images": tensor(f)} for f in video[0::2]])
    recipe = Recipe.from_file(RECIPE)
    out = recipe.apply(yolox_path, tmp_path / "yolox_w4w8.onnx", calib=calib).path

    m = onnx.load(str(out))
    int4 = [i for i in m.graph.initializer if i.data_type == TensorProto.INT4]
    assert len(int4) == len(recipe.to_list()[0]["low_bit_nodes"]) == 12
    assert not [i for i in m.graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) == 4
                and np.prod(i.dims) >= 1024], "a large conv weight stayed float"
    assert yolox_path.stat().st_size / out.stat().st_size >= 4.0

    ev = FrameDetectionAgreement(yolox_path, stills + video[1::2],
                                 decoder_factory=lambda hw: YoloxDecoder(hw, score_thr=0.3))
    assert ev(out) >= 0.95
