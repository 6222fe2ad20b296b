"""Cross-layer equalization: the FP32 rewrite keeps the function and evens the ranges."""
from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from sdk.compress.equalize import equalizable_pairs, equalize


def _dw_separable(act: str, seed: int = 0) -> onnx.ModelProto:
    """Conv(3->8) -> act -> depthwise Conv(8) -> act -> pointwise Conv(8->8), channels of very
    different scale (as after a folded BatchNorm)."""
    rng = np.random.default_rng(seed)
    c = 8
    gain = np.exp(rng.uniform(-2.5, 2.5, c)).astype(np.float32)       # 150x spread between channels
    w1 = rng.standard_normal((c, 3, 3, 3)).astype(np.float32) * 0.3 * gain[:, None, None, None]
    w2 = rng.standard_normal((c, 1, 3, 3)).astype(np.float32) * 0.5
    w3 = rng.standard_normal((c, c, 1, 1)).astype(np.float32) * 0.3 / gain[None, :, None, None]
    inits = [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (rng.standard_normal(c).astype(np.float32) * 0.1,
             "b1"), (w2, "w2"), (np.zeros(c, np.float32), "b2"), (w3, "w3")]]
    nodes, x = [], "input"
    for i, (w, b, kw) in enumerate([("w1", "b1", {"pads": [1] * 4}), ("w2", "b2", {"pads": [1] * 4, "group": c}),
                                    ("w3", None, {})]):
        y = f"c{i}"
        nodes.append(helper.make_node("Conv", [x, w] + ([b] if b else []), [y], name=f"conv{i}", **kw))
        if i == 2:
            break
        if act == "Relu":
            nodes.append(helper.make_node("Relu", [y], [f"a{i}"], name=f"relu{i}"))
        else:
            nodes.append(helper.make_node("Sigmoid", [y], [f"s{i}"], name=f"sig{i}"))
            nodes.append(helper.make_node("Mul", [y, f"s{i}"], [f"a{i}"], name=f"mul{i}"))
        x = f"a{i}"
    g = helper.make_graph(nodes, "dws", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("c2", TensorProto.FLOAT, [1, c, 16, 16])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def _run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _spread(m: onnx.ModelProto, feeds, tensor: str) -> float:
    from sdk.compress.prune_reconstruct import with_outputs

    sess = ort.InferenceSession(with_outputs(m, [tensor]), providers=["CPUExecutionProvider"])
    amax = np.max([np.abs(sess.run([tensor], f)[0]).max(axis=(0, 2, 3)) for f in feeds], axis=0)
    return float(amax.max() / amax.min())


def test_relu_chain_is_equalized_exactly_and_ranges_even_out():
    m = _dw_separable("Relu")
    assert [(p.a.name, p.b.name, p.act) for p in equalizable_pairs(m)] == [("conv0", "conv1", "Relu"),
                                                                         ("conv1", "conv2", "Relu")]
    rng = np.random.default_rng(1)
    feeds = [{"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(4)]
    e = copy.deepcopy(m)
    rep = equalize(e, feeds)
    assert rep.summary()["equalized"] == 2
    for f in feeds:
        np.testing.assert_allclose(_run(e, f["input"]), _run(m, f["input"]), rtol=1e-4, atol=1e-5)
    assert _spread(e, feeds, "a0") < 0.2 * _spread(m, feeds, "a0")     # the per-tensor grid's channels
    w3 = lambda mm: np.abs(numpy_helper.to_array(
        next(t for t in mm.graph.initializer if t.name == "w3"))).max(axis=(0, 2, 3))
    assert w3(e).max() / w3(e).min() < w3(m).max() / w3(m).min()      # pointwise input columns too


def test_data_free_equalization_uses_weight_ranges():
    m = _dw_separable("Relu")
    e = copy.deepcopy(m)
    rep = equalize(e)
    assert rep.summary()["equalized"] == 2
    x = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(e, x), _run(m, x), rtol=1e-4, atol=1e-5)
    w1 = lambda mm: np.abs(numpy_helper.to_array(mm.graph.initializer[0])).reshape(8, -1).max(1)
    assert w1(e).max() / w1(e).min() < w1(m).max() / w1(m).min()


def test_silu_chain_stays_within_tolerance_and_is_skipped_without_data():
    m = _dw_separable("SiLU")
    assert [p.act for p in equalizable_pairs(m)] == ["SiLU", "SiLU"]
    assert equalize(copy.deepcopy(m)).summary()["equalized"] == 0       # SiLU is not homogeneous: needs data
    rng = np.random.default_rng(3)
    feeds = [{"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(4)]
    loose, tight = copy.deepcopy(m), copy.deepcopy(m)
    r_loose = equalize(loose, feeds, silu_tol=1e-2).summary()
    r_tight = equalize(tight, feeds, silu_tol=1e-5).summary()
    assert r_tight["silu_kept_fraction"] < r_loose["silu_kept_fraction"] <= 1.0
    ref = _run(m, feeds[0]["input"])
    err = lambda mm: float(np.mean((_run(mm, feeds[0]["input"]) - ref) ** 2) / np.mean(ref ** 2))
    assert err(tight) < 1e-4 and err(tight) < err(loose)


def test_float_silu_between_integer_convs_becomes_one_quickgelu(tmp_path):
    """qdq_silu.fuse_silu: Mul(x, Sigmoid(x)) -> com.microsoft.QuickGelu, same outputs."""
    from sdk.compress.qdq_silu import fuse_silu

    m = _dw_separable("SiLU")
    f = copy.deepcopy(m)
    assert fuse_silu(f) == 2
    ops = [n.op_type for n in f.graph.node]
    assert ops.count("QuickGelu") == 2 and "Sigmoid" not in ops and "Mul" not in ops
    x = np.random.default_rng(4).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(f, x), _run(m, x), rtol=1e-4, atol=1e-5)
