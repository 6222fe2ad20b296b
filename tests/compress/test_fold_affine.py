"""fold_affine: constant scale/shift nodes folded into convolutions, exactly; and the INT8
model built from the folded PP-OCRv4 det runs integer kernels."""
from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.compress import PassContext, Recipe
from sdk.compress.candidates import candidate_set
from sdk.compress.fold_affine import FoldAffine, fold_affine
from tests.compress.test_qdq_refine import _optimized_ops


def _c(name: str, v) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(v, np.float32), name))


def _lcnet_like() -> onnx.ModelProto:
    """Conv -> Mul/Add (constant first, as paddle2onnx writes it) -> hard-swish -> Mul/Add ->
    1x1 conv (folds) -> Relu -> Mul/Add -> padded depthwise conv (that affine must stay);
    ConvTranspose -> Add(bias) -> BatchNormalization -> Relu."""
    rng = np.random.default_rng(0)
    w = lambda *s: numpy_helper.from_array(rng.normal(0, 0.3, s).astype(np.float32))  # noqa: E731
    inits = []
    for name, shape in [("w1", (8, 3, 3, 3)), ("w2", (8, 8, 1, 1)), ("w3", (8, 1, 3, 3)), ("wt", (8, 4, 2, 2))]:
        t = w(*shape)
        t.name = name
        inits.append(t)
    inits += [numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "b1")]
    bn = [numpy_helper.from_array(v.astype(np.float32), n) for n, v in
          [("g", rng.uniform(0.5, 2, 4)), ("be", rng.normal(size=4)), ("mu", rng.normal(size=4)),
           ("var", rng.uniform(0.5, 2, 4))]]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        _c("a1", 0.9), helper.make_node("Mul", ["a1", "c1"], ["m1"]),
        _c("d1", 0.4), helper.make_node("Add", ["m1", "d1"], ["p1"]),
        _c("three", 3.0), helper.make_node("Add", ["p1", "three"], ["h0"]),
        _c("zero", 0.0), _c("six", 6.0), helper.make_node("Clip", ["h0", "zero", "six"], ["h1"]),
        helper.make_node("Mul", ["p1", "h1"], ["h2"]), helper.make_node("Div", ["h2", "six"], ["hs"]),
        _c("a2", 0.7), helper.make_node("Mul", ["a2", "hs"], ["m2"]),
        _c("d2", -0.3), helper.make_node("Add", ["m2", "d2"], ["p2"]),
        helper.make_node("Conv", ["p2", "w2"], ["c2"]),                                  # 1x1: folds
        helper.make_node("Relu", ["c2"], ["r2"]),
        _c("a3", 1.3), helper.make_node("Mul", ["a3", "r2"], ["m3"]),
        _c("d3", 0.2), helper.make_node("Add", ["m3", "d3"], ["p3"]),
        helper.make_node("Conv", ["p3", "w3"], ["c3"], group=8, pads=[1, 1, 1, 1]),      # padded: the Add stays
        helper.make_node("ConvTranspose", ["c3", "wt"], ["t"], strides=[2, 2]),
        _c("tb", np.linspace(-1, 1, 4).reshape(4, 1, 1)), helper.make_node("Add", ["t", "tb"], ["tb1"]),
        helper.make_node("BatchNormalization", ["tb1", "g", "be", "mu", "var"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["y"]),
    ]
    g = helper.make_graph(nodes, "lcnet_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 32, 32])],
                          initializer=inits + bn)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 12)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def test_fold_affine_is_exact_and_leaves_padded_inputs_alone():
    m = _lcnet_like()
    x = np.random.default_rng(1).normal(size=(1, 3, 16, 16)).astype(np.float32)
    ref = _run(m, x)
    counts = fold_affine(m)
    assert counts == {"after_conv": 4, "before_conv": 2, "hardswish": 1}   # BN + bias Add after ConvTranspose
    onnx.checker.check_model(m)
    ops = collections.Counter(n.op_type for n in m.graph.node if n.op_type != "Constant")
    # the Mul(a3)/Add(d3) feed a padded conv: a border would see d3 instead of 0, so they stay
    assert ops == {"Conv": 3, "ConvTranspose": 1, "HardSigmoid": 1, "Mul": 2, "Add": 1, "Relu": 2}
    np.testing.assert_allclose(_run(m, x), ref, rtol=1e-4, atol=1e-4)


def test_fold_affine_pass_without_anything_to_fold(tiny_cnn_path, tmp_path):
    res = FoldAffine().run(tiny_cnn_path, tmp_path / "f.onnx", PassContext())
    assert res.report["after_conv"] + res.report["before_conv"] + res.report["hardswish"] <= 1
    cs = candidate_set(tiny_cnn_path, "cpu")
    assert "folded_int8_reconstructed" not in cs.recipes
    assert {"int8_reconstructed", "static_qdq_pct_pc"} <= set(cs.recipes) and cs.sensitivity


@pytest.mark.slow
def test_folded_ppocr_int8_runs_integer_kernels(ppocr_det, tmp_path):
    """The default search tries the folded INT8; its graph keeps every conv in QLinearConv, and
    the affine blocks are gone (a third of the INT8 run time when left as QLinearMul/Add)."""
    cs = candidate_set(ppocr_det, "cpu")
    assert {"folded_fp32_optimized", "folded_int8_reconstructed", "folded_int8_adaround"} <= set(cs.recipes)
    # the unfolded static INT8 and the sensitivity analysis (on the unfolded graph) are skipped, saying why
    assert not [n for n in cs.recipes if n.startswith(("static_", "int8_"))] and not cs.sensitivity
    assert any("int8_reconstructed" in s["name"] and "folded" in s["reason"] for s in cs.skipped)
    rng = np.random.default_rng(0)
    calib = [{"x": rng.uniform(-1, 1, (1, 3, 96, 160)).astype(np.float32)} for _ in range(2)]
    folded = Recipe([{"pass": "fold_affine"}]).apply(ppocr_det, tmp_path / "f32.onnx").path
    ref, got = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, calib[0])[0]
                for p in (ppocr_det, folded))
    np.testing.assert_allclose(got, ref, atol=1e-4)            # folding is exact
    out = Recipe([{"pass": "quantize_static", "per_channel": True}]).apply(
        folded, tmp_path / "folded.onnx", calib=calib, work_dir=tmp_path).path
    ops = _optimized_ops(out, tmp_path)
    assert ops["QLinearConv"] == 62 and ops["Conv"] == 0 and ops["ConvInteger"] == 0
    # unfolded, onnxruntime runs 86 QLinearMul + 89 QLinearAdd and 24 float Divs (hard-swish)
    assert ops["QLinearMul"] <= 48 and ops["QLinearAdd"] <= 25
    assert ops["Div"] == 0 and ops["BatchNormalization"] == 0
    # what stays float: the hard-sigmoids (no integer kernel), Resize, the two ConvTransposes
    assert ops["ConvTranspose"] == 2 and ops["HardSigmoid"] == 34
