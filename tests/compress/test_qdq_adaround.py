"""AdaRound block reconstruction (``quantize_int8(reconstruct="adaround")``): it lowers each
block's error against plain rounding, writes integer weights back into the QDQ graph, and that
graph still runs as onnxruntime's fused integer kernels."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")

from sdk.compress import CalibrationData, PassContext, QuantizeInt8, QuantizeStatic, Recipe
from sdk.compress.adaround import reconstruct_qdq
from sdk.compress.graph_prep import load_model
from tests.compress.test_qdq_refine import _optimized_ops


def test_adaround_pass_lowers_block_error_and_keeps_integer_kernels(tiny_cnn_path, calib_feeds, tmp_path):
    feeds = calib_feeds(tiny_cnn_path, 16)
    ctx = PassContext(calib=CalibrationData(feeds), work_dir=tmp_path / "w")
    res = QuantizeInt8(reconstruct="adaround", reconstruct_iters=150).run(tiny_cnn_path, tmp_path / "a.onnx", ctx)
    out, rep = res.path, res.report["reconstruct"]
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
    """On the real detector and real frames (onnxruntime's plain per-channel QDQ, first 8 blocks,
    4 frames at 128x224), the learned rounding beats nearest rounding."""
    from sdk.compress.frames import FrameCalibration, load_frames

    frames = load_frames([shared_dir / "data" / "driving" / "lanelines_p1" / "test_images"])
    small = Recipe([{"pass": "fix_input_shape", "shape": [1, 3, 128, 224]}]).apply(yolox_path, tmp_path / "s.onnx").path
    feeds = FrameCalibration(frames[:4], (128, 224)).for_model(small)
    ctx = PassContext(calib=CalibrationData(feeds), work_dir=tmp_path / "w")
    QuantizeStatic(per_channel=True).run(small, tmp_path / "q.onnx", ctx)
    qdq = onnx.load(str(tmp_path / "q.onnx"))
    fm = load_model(tmp_path / "w" / "static_prep.onnx", check=False)
    rep = reconstruct_qdq(fm, qdq, feeds, iters=60, max_blocks=8)
    assert len(rep.blocks) == 8
    lower = [b["error_after"] < b["error_nearest"] for b in rep.blocks.values()]
    s = rep.summary()
    # the learned rounding is kept only where it wins, so "not worse" holds by construction; what
    # is tested is that it wins: in most blocks, and by a margin on average
    assert sum(lower) >= 6, rep.blocks
    assert s["error_after"] < 0.98 * s["error_nearest"], s
