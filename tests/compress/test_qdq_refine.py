"""Reconstructed INT8 (``quantize_int8``): it lowers the error against plain rounding, keeps
onnxruntime's graph, and that graph runs as fused integer kernels."""
from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sdk.compress import CalibrationData, PassContext, QuantizeInt8, QuantizeStatic, Recipe
from sdk.compress.qdq_refine import mse_range, refine_qdq


def _optimized_ops(path, tmp_path) -> collections.Counter:
    """Op histogram of the graph onnxruntime actually runs (after its QDQ fusions)."""
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "ort_optimized.onnx")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)


def test_mse_range_never_worse_than_min_max():
    rng = np.random.default_rng(0)
    v = rng.laplace(size=20000)                                       # heavy tails stretch min-max
    scale, zp, mse, mse_minmax = mse_range(v)
    assert mse < 0.98 * mse_minmax
    assert 0 <= zp <= 255 and scale < (v.max() - v.min()) / 255
    flat = np.linspace(-1, 1, 1000)                                   # nothing to clip: min-max is best
    assert mse_range(flat)[2] == pytest.approx(mse_range(flat)[3])


def test_silu_aware_range_clips_the_tail_silu_flattens():
    """A pre-activation with a long negative tail (a conv before SiLU): the grid chosen for the
    error after the SiLU is finer, and its error after the SiLU lower, than the plain MSE grid's."""
    from sdk.compress.qdq_refine import _hist_mse, hist_range, silu

    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0.5, 1.0, 20000), -rng.exponential(6.0, 4000)])
    counts, edges = np.histogram(v, bins=4096)
    centers = (edges[:-1] + edges[1:]) / 2
    s_plain, z_plain, _, _ = hist_range(counts, edges)
    s_silu, z_silu, _, _ = hist_range(counts, edges, fn=silu)
    after = lambda s, z: _hist_mse(counts, centers, np.array([-z * s]), np.array([(255 - z) * s]), silu)[0][0]  # noqa: E731
    assert s_silu < s_plain and after(s_silu, z_silu) < 0.8 * after(s_plain, z_plain)


def test_refine_lowers_output_error_and_keeps_the_graph(tiny_cnn_path, calib_feeds, tmp_path):
    feeds = calib_feeds(tiny_cnn_path, 24)
    calib = CalibrationData(feeds)
    plain = QuantizeStatic(per_channel=True).run(tiny_cnn_path, tmp_path / "plain.onnx",
                                                 PassContext(calib=calib, work_dir=tmp_path / "w1")).path
    ctx = PassContext(calib=calib, work_dir=tmp_path / "w2")
    res = QuantizeInt8().run(tiny_cnn_path, tmp_path / "int8.onnx", ctx)
    refined = res.path
    ops = lambda p: collections.Counter(n.op_type for n in onnx.load(str(p)).graph.node)  # noqa: E731
    assert ops(plain) == ops(refined)                                  # same graph, other numbers
    rep = res.report
    assert rep["weighted_layers"] == 3 and rep["weight_error_after"] < rep["weight_error_before"]

    def err(p):
        ref = ort.InferenceSession(str(tiny_cnn_path)).run(None, feeds[0])[0]
        return float(np.abs(ort.InferenceSession(str(p)).run(None, feeds[0])[0] - ref).mean())
    assert err(refined) < err(plain)


def test_refine_needs_feeds(tiny_cnn_path):
    m = onnx.load(str(tiny_cnn_path))
    with pytest.raises(ValueError, match="calibration feeds"):
        refine_qdq(m, m, [])


def test_reconstructed_graph_runs_fused_integer_kernels(tiny_cnn_path, calib_feeds, tmp_path):
    """onnxruntime fuses DQ -> Conv -> Q into QLinearConv: the integer kernels really run; a node
    kept in float (keep_float_nodes) runs as a float op on float inputs."""
    calib = CalibrationData(calib_feeds(tiny_cnn_path, 8))
    q = Recipe([{"pass": "quantize_int8"}]).apply(tiny_cnn_path, tmp_path / "q.onnx", calib=calib,
                                                  work_dir=tmp_path).path
    ops = _optimized_ops(q, tmp_path)
    assert ops["QLinearConv"] == 2 and ops["QGemm"] == 1 and ops["Conv"] == 0
    kept = Recipe([{"pass": "quantize_int8", "keep_float_nodes": ["fc"]}]).apply(
        tiny_cnn_path, tmp_path / "k.onnx", calib=calib, work_dir=tmp_path).path
    ops = _optimized_ops(kept, tmp_path)
    assert ops["QLinearConv"] == 2 and ops["QGemm"] == 0 and ops["Gemm"] + ops["FusedGemm"] == 1


def test_keep_float_never_bypasses_a_folded_activation(tiny_cnn_path, calib_feeds, tmp_path):
    """conv2 reads relu1's output; onnxruntime folded that Relu into the 8-bit grid, so the float
    tensor behind the grid lacks it. Keeping conv2 in float must not read it (it stays integer),
    and the model still agrees with FP32."""
    feeds = calib_feeds(tiny_cnn_path, 8)
    calib = CalibrationData(feeds)
    ctx = PassContext(calib=calib, work_dir=tmp_path / "w")
    res = QuantizeInt8(keep_float_nodes=["conv2"]).run(tiny_cnn_path, tmp_path / "k.onnx", ctx)
    out = res.path
    assert res.report["kept_float"] == []
    ref = ort.InferenceSession(str(tiny_cnn_path)).run(None, feeds[0])[0]
    got = ort.InferenceSession(str(out)).run(None, feeds[0])[0]
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()


@pytest.mark.shared
def test_reconstruction_lowers_block_error_on_yolox(yolox_path, shared_dir, tmp_path):
    """On the real detector and real frames: against plain min-max QDQ, the reconstructed model's
    block outputs (every 20th Conv) are closer to FP32 on frames it was not calibrated on."""
    from sdk.compress.frames import FrameCalibration, load_frames
    from sdk.compress.graph_prep import load_model, prepare_for_quantization
    from sdk.compress.prune_reconstruct import with_outputs

    frames = load_frames([shared_dir / "data" / "driving" / "lanelines_p1" / "test_images"])
    cal = FrameCalibration(frames[:4], (416, 416))
    held = FrameCalibration(frames[4:6], (416, 416))
    prep = prepare_for_quantization(yolox_path, tmp_path / "prep.onnx", min_opset=13)
    fm = load_model(prep, check=False)
    plain = QuantizeStatic(per_channel=True, preprocess=False).run(prep, tmp_path / "plain.onnx",
                                                                  PassContext(calib=cal, work_dir=tmp_path / "a")).path
    qm = onnx.load(str(plain))
    rep = refine_qdq(fm, qm, cal.for_model(prep))
    assert rep.summary()["weight_error_after"] < rep.summary()["weight_error_before"]
    convs = [n.output[0] for n in fm.graph.node if n.op_type == "Conv"][5::20]

    def outs(model):
        sess = ort.InferenceSession(with_outputs(model, convs), providers=["CPUExecutionProvider"])
        return [sess.run(convs, f) for f in held.for_model(prep)]

    ref, a, b = outs(fm), outs(onnx.load(str(plain))), outs(qm)

    def rel(x):
        return np.mean([[np.linalg.norm(o - r) / np.linalg.norm(r) for o, r in zip(xs, rs, strict=True)]
                        for xs, rs in zip(x, ref, strict=True)], 0)
    e_plain, e_ref = rel(a), rel(b)
    assert (e_ref < e_plain).mean() >= 0.8, (e_plain, e_ref)       # measured: 6 of 6 blocks lower
    assert e_ref.mean() < 0.97 * e_plain.mean(), (e_plain, e_ref)   # measured: 0.74 against 0.81


def test_fake_quantized_torch_copy_computes_what_onnxruntime_computes(tiny_cnn_path, calib_feeds, tmp_path):
    """The fine-tuning copy is only useful if it is the integer model: before any step its
    outputs equal onnxruntime's on the QDQ graph (renamed graph outputs, the weight grid,
    bias-corrected biases included)."""
    torch = pytest.importorskip("torch")
    from sdk.compress.graph_prep import load_model, prepare_for_quantization
    from sdk.compress.qat import fake_quant_module

    feeds = calib_feeds(tiny_cnn_path, 8)
    prep = prepare_for_quantization(tiny_cnn_path, tmp_path / "prep.onnx", min_opset=13)
    q = QuantizeInt8(preprocess=False).run(prep, tmp_path / "q.onnx",
                                           PassContext(calib=CalibrationData(feeds), work_dir=tmp_path / "w")).path
    mod = fake_quant_module(load_model(prep, check=False), onnx.load(str(q)))
    sess = ort.InferenceSession(str(q))
    for f in feeds[:3]:
        with torch.no_grad():
            y = mod(torch.from_numpy(f["input"])).numpy()
        np.testing.assert_allclose(y, sess.run(None, f)[0], atol=1e-5)


def test_quantization_aware_finetuning_trains_and_keeps_the_graph(tiny_cnn_path, calib_feeds, tmp_path):
    pytest.importorskip("torch")
    from sdk.compress.graph_prep import load_model, prepare_for_quantization
    from sdk.compress.qat import finetune_qdq

    feeds = calib_feeds(tiny_cnn_path, 16)
    prep = prepare_for_quantization(tiny_cnn_path, tmp_path / "prep.onnx", min_opset=13)
    q = QuantizeInt8(preprocess=False).run(prep, tmp_path / "q.onnx",
                                           PassContext(calib=CalibrationData(feeds), work_dir=tmp_path / "w")).path
    before, tuned = onnx.load(str(q)), onnx.load(str(q))
    rep = finetune_qdq(load_model(prep, check=False), tuned, feeds, steps=40, lr=1e-3, batch_size=4)
    assert rep["loss_last"] < rep["loss_first"]
    assert collections.Counter(n.op_type for n in tuned.graph.node) == \
        collections.Counter(n.op_type for n in before.graph.node)
    ort.InferenceSession(tuned.SerializeToString())          # still a valid integer model
