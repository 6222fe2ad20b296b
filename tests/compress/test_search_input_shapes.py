"""Rectangular-inference candidates: judged at their own input size, timed on fitted feeds."""
from __future__ import annotations

import numpy as np

from sdk.bench import fit_feeds
from sdk.compress import FrameDetectionAgreement, OptimizeOptions, YoloxDecoder, optimize
from sdk.runtime import TensorSpec


def test_fit_feeds_crops_and_pads_to_fixed_dims():
    feeds = {"x": np.arange(2 * 5, dtype=np.float32).reshape(1, 2, 5), "n": np.ones(3, np.int64)}
    specs = [TensorSpec(name="x", dtype="float32", shape=[1, 3, 4]), TensorSpec(name="n", dtype="int64", shape=["k"])]
    out = fit_feeds(specs, feeds)
    assert out["x"].shape == (1, 3, 4)
    np.testing.assert_array_equal(out["x"][0, :2], feeds["x"][0, :, :4])
    assert (out["x"][0, 2] == 0).all()
    assert out["n"] is feeds["n"]


def _frames(shared_dir):
    import cv2

    paths = sorted((shared_dir / "data" / "driving" / "advanced_lane_lines" / "test_images").glob("*.jpg"))[:4]
    return [cv2.imread(str(p)) for p in paths]


def test_frame_agreement_is_perfect_for_the_reference(yolox_path, shared_dir):
    ev = FrameDetectionAgreement(yolox_path, _frames(shared_dir), lambda hw: YoloxDecoder(hw, score_thr=0.3))
    assert sum(len(d) for d in ev.reference) >= 4          # real cars on the road frames
    assert ev.evaluate(yolox_path) == 1.0


def test_optimize_tries_a_rectangular_input(yolox_path, shared_dir, tmp_path):
    """The 256x416 candidate is built, judged in frame pixels (F1 >= 0.95 against the 416x416
    FP32 model) and timed; the choice itself depends on timing, so it is not asserted."""
    from sdk.preprocess import letterbox

    frames = _frames(shared_dir)
    img, _ = letterbox(frames[0], (416, 416), pad_value=114)
    calib = [{"images": np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)}]
    ev = FrameDetectionAgreement(yolox_path, frames, lambda hw: YoloxDecoder(hw, score_thr=0.3))
    opts = OptimizeOptions(out_dir=tmp_path, candidates={"recipes": {}, "input_shapes": [[1, 3, 256, 416]]},
                           latency={"rounds": 2, "iters": 2, "energy": False},
                           budget={"max_drop": 0.05, "check_resolution": False})   # 4 frames: too few to
    res = optimize(yolox_path, calib, ev, opts)                                      # resolve 5% (tested apart)
    rect = next(c for c in res.candidates if c.name == "input_1x3x256x416_optimized")
    assert rect.ok, rect.error
    assert rect.metric >= 0.95
    assert rect.latency_ms is not None and rect.size_bytes > 0
    import onnx

    dims = [d.dim_value for d in onnx.load(str(rect.path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 256, 416]
    assert res.chosen.name in ("fp32", rect.name)
