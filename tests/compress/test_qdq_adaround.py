"""AdaRound block reconstruction (``quantize_int8(reconstruct="adaround")``): it lowers each
block's error against plain rounding, writes integer weights back into the QDQ graph, and that
graph still runs as onnxruntime's fused integer kernels."""
from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest

pytest.importorskip("torch")

from sdk.compress import CalibrationData, PassContext, QuantizeInt8, Recipe
from sdk.compress.adaround import reconstruct_qdq
from sdk.compress.graph_prep import load_model


def _optimized_ops(path, tmp_path) -> collections.Counter:
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "ort_optimized.onnx")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)


def test_adaround_pass_lowers_block_error_and_keeps_integer_kernels(tiny_cnn_path, calib_feeds, tmp_path):
    feeds = calib_feeds(tiny_cnn_path, 16)
    ctx = PassContext(calib=CalibrationData(feeds), work_dir=tmp_path / "w")
    out = QuantizeInt8(reconstruct="adaround", reconstruct_iters=150).run(tiny_cnn_path, tmp_path / "a.onnx", ctx)
    rep = ctx.extra["reports"]["quantize_int8"]["reconstruct"]
    assert rep["blocks"] == 2                                   # the two convs (the Gemm is left alone)
    assert rep["error_after"] <= rep["error_before"] and rep["error_after"] < rep["error_nearest"]
    ops = _optimized_ops(out, tmp_path)
    assert ops["QLinearConv"] == 2 and ops["Conv"] == 0
    w = [onnx.numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer if t.name.endswith("_quantized")]
    assert any(a.dtype == np.int8 for a in w)


def test_reconstruct_needs_feeds(tiny_cnn_path):
    m = onnx.load(str(tiny_cnn_path))
    with pytest.raises(ValueError, match="calibration feeds"):
        reconstruct_qdq(m, m, [])


@pytest.mark.shared
def test_adaround_lowers_per_block_error_on_yolox(yolox_path, shared_dir, tmp_path):
    """On the real detector and real frames (first 10 blocks, 6 frames at 128x224), the learned
    rounding beats nearest rounding at the same scales in every block, and the rounding the
    graph held (GPTQ where it won) on average."""
    from sdk.compress.frames import FrameCalibration, load_frames

    frames = load_frames([shared_dir / "data" / "driving" / "lanelines_p1" / "test_images"])
    small = Recipe([{"pass": "fix_input_shape", "shape": [1, 3, 128, 224]}]).apply(yolox_path, tmp_path / "s.onnx")
    feeds = FrameCalibration(frames[:6], (128, 224)).for_model(small)
    ctx = PassContext(calib=CalibrationData(feeds), work_dir=tmp_path / "w")
    QuantizeInt8().run(small, tmp_path / "q.onnx", ctx)
    qdq = onnx.load(str(tmp_path / "q.onnx"))
    fm = load_model(tmp_path / "w" / "static_prep.onnx", check=False)
    rep = reconstruct_qdq(fm, qdq, feeds, iters=80, max_blocks=10)
    assert len(rep.blocks) == 10
    for name, b in rep.blocks.items():
        assert b["error_after"] < b["error_nearest"], name
    s = rep.summary()
    assert s["error_after"] < s["error_before"] and s["improved"] >= 5
