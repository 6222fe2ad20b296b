"""absorb_affine: a scalar Mul/Add between 8-bit grids becomes one change of grid, exactly, and
onnxruntime then runs two integer ops fewer (PP-OCRv4 det: 13 QLinearMul + 13 QLinearAdd)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.compress import CalibrationData, PassContext, QuantizeInt8, Recipe
from tests.compress.test_qdq_refine import _optimized_ops


def _hardswish_affine() -> onnx.ModelProto:
    """conv1 -> hard-swish -> Mul(0.7) -> Add(-0.3) -> padded depthwise conv2 (absorbable) ->
    Relu -> Mul(1.3) -> Add(0.2) -> padded conv3: after the Relu the grid starts at 0, and 0.2
    shifts it up, so the convolution's zero padding has no place on it (stays as it is)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.4, s).astype(np.float32), n)
             for n, s in [("w1", (8, 3, 3, 3)), ("w2", (8, 1, 3, 3)), ("w3", (4, 8, 3, 3))]]
    inits += [numpy_helper.from_array(np.float32(v), n) for n, v in
              [("a", 0.7), ("b", -0.3), ("a2", 1.3), ("b2", 0.2)]]
    inits += [numpy_helper.from_array(rng.normal(0, 0.1, n).astype(np.float32), f"bias{i}")
              for i, n in ((1, 8), (2, 8), (3, 4))]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "bias1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("HardSigmoid", ["c1"], ["hs"], alpha=1 / 6, beta=0.5, name="hsig"),
        helper.make_node("Mul", ["c1", "hs"], ["h"], name="hswish"),
        helper.make_node("Mul", ["a", "h"], ["m"], name="scale"),
        helper.make_node("Add", ["m", "b"], ["p"], name="shift"),
        helper.make_node("Conv", ["p", "w2", "bias2"], ["c2"], group=8, pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r"], name="relu"),
        helper.make_node("Mul", ["a2", "r"], ["m2"], name="scale2"),
        helper.make_node("Add", ["m2", "b2"], ["p2"], name="shift2"),
        helper.make_node("Conv", ["p2", "w3", "bias3"], ["y"], pads=[1, 1, 1, 1], name="conv3"),
    ]
    g = helper.make_graph(nodes, "hswish_affine", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                               [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture(scope="module")
def model_and_feeds(tmp_path_factory):
    p = tmp_path_factory.mktemp("affine") / "hswish_affine.onnx"
    onnx.save(_hardswish_affine(), str(p))
    rng = np.random.default_rng(1)
    return p, [{"x": rng.normal(size=(1, 3, 16, 16)).astype(np.float32)} for _ in range(8)]


def _quantize(path, feeds, tmp_path, name, **cfg):
    ctx = PassContext(calib=CalibrationData(feeds), work_dir=tmp_path / f"w_{name}")
    return QuantizeInt8(**cfg).run(path, tmp_path / f"{name}.onnx", ctx)


def _error(path, ref_path, feeds) -> float:
    s, r = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (path, ref_path))
    return float(np.mean([np.abs(s.run(None, f)[0] - r.run(None, f)[0]).mean() for f in feeds]))


def test_absorbed_affine_is_a_change_of_grid(model_and_feeds, tmp_path):
    path, feeds = model_and_feeds
    res = _quantize(path, feeds, tmp_path, "abs")
    off = _quantize(path, feeds, tmp_path, "off", absorb_affine=False)
    assert res.report["absorbed_affine"] == 1 and "absorbed_affine" not in off.report
    m = onnx.load(str(res.path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    prod = {o: n for n in m.graph.node for o in n.output}
    conv2 = next(n for n in m.graph.node if n.name == "conv2")
    dq = prod[conv2.input[0]]                       # the new grid: reads the hard-swish's integers
    q1 = prod[dq.input[0]]
    assert q1.op_type == "QuantizeLinear" and q1.input[0] == "h"
    assert not {"scale", "shift"} & {n.name for n in m.graph.node}
    s_in, z_in = float(inits[q1.input[1]]), int(inits[q1.input[2]])
    s_out, z_out = float(inits[dq.input[1]]), int(inits[dq.input[2]])
    q = np.arange(256, dtype=np.float64)
    np.testing.assert_allclose(s_out * (q - z_out), 0.7 * s_in * (q - z_in) - 0.3, atol=1e-5)
    bias_dq, w_dq = prod[conv2.input[2]], prod[conv2.input[1]]
    np.testing.assert_allclose(inits[bias_dq.input[1]].ravel(), s_out * inits[w_dq.input[1]].ravel(), rtol=1e-6)
    # the affine after the Relu stays; onnxruntime runs one QLinearMul and one QLinearAdd fewer
    assert {"scale2", "shift2"} <= {n.name for n in m.graph.node}
    ops, ops_off = _optimized_ops(res.path, tmp_path), _optimized_ops(off.path, tmp_path)
    assert ops["QLinearConv"] == ops_off["QLinearConv"] == 3
    assert (ops["QLinearMul"], ops["QLinearAdd"]) == (ops_off["QLinearMul"] - 1, ops_off["QLinearAdd"] - 1)
    assert _error(res.path, path, feeds) <= 1.05 * _error(off.path, path, feeds)


def test_keep_float_never_reads_through_a_change_of_grid(model_and_feeds, tmp_path):
    """conv2 reads the absorbed grid: the float tensor behind it is the hard-swish output, not
    0.7 x - 0.3, so conv2 cannot be kept in float (it stays integer and the model stays right)."""
    path, feeds = model_and_feeds
    res = _quantize(path, feeds, tmp_path, "kept", keep_float_nodes=["conv2", "conv3"])
    assert res.report["kept_float"] == ["conv3"]
    assert _error(res.path, path, feeds) < 0.1 * float(np.mean([np.abs(
        ort.InferenceSession(str(path)).run(None, f)[0]).mean() for f in feeds]))


@pytest.mark.slow
def test_folded_ppocr_int8_absorbs_its_affine_blocks(ppocr_det, tmp_path):
    """PP-OCRv4 det after fold_affine: the 13 Mul/Add pairs before padded depthwise convs are
    absorbed (one more, whose shift is under half a grid step, and the one after a Relu stay);
    every conv is still a QLinearConv."""
    rng = np.random.default_rng(0)
    calib = [{"x": rng.uniform(-1, 1, (1, 3, 96, 160)).astype(np.float32)} for _ in range(2)]
    folded = Recipe([{"pass": "fold_affine"}]).apply(ppocr_det, tmp_path / "f32.onnx").path
    built = Recipe([{"pass": "quantize_int8"}]).apply(folded, tmp_path / "q.onnx", calib=calib, work_dir=tmp_path)
    assert 10 <= built.reports["quantize_int8"]["absorbed_affine"] <= 14
    ops = _optimized_ops(built.path, tmp_path)
    assert ops["QLinearConv"] == 62 and ops["Conv"] == 0
    assert ops["QLinearMul"] <= 38 and ops["QLinearAdd"] <= 15     # 48 and 25 without the rewrite
