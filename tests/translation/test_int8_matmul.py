"""The dequantize-per-run MatMul rewrite of the Whisper decoders (asr/int8_matmul.py)."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from apps.mobile_translation.asr.int8_matmul import fuse_dequantize_matmul  # noqa: E402

RNG = np.random.default_rng(0)
W = RNG.integers(0, 256, size=(40, 16), dtype=np.uint8)      # [vocab, d], as the tied embedding
SCALE, ZP = np.float32(0.01), np.uint8(120)


def _head(prefix: str, scale_name: str = "scale") -> list:
    """x [1, 16] -> logits [1, 40] = x @ DequantizeLinear(Transpose(W))."""
    return [helper.make_node("Transpose", ["W"], [f"{prefix}Wt"], perm=[1, 0]),
            helper.make_node("DequantizeLinear", [f"{prefix}Wt", scale_name, "zp"], [f"{prefix}Wf"]),
            helper.make_node("MatMul", ["x", f"{prefix}Wf"], [f"{prefix}logits"])]


def _model(in_if: bool, per_channel: bool = False):
    scale = (np.full(40, SCALE, np.float32) if per_channel else np.array(SCALE, np.float32))
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(scale, "scale"),
             numpy_helper.from_array(np.array(ZP), "zp")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 40])
    if not in_if:
        nodes = _head("")
        nodes[-1].output[0] = "logits"
        if per_channel:   # a per-column scale needs axis=0 on the transposed [16, 40] weight
            nodes[1].attribute.append(helper.make_attribute("axis", 1))
        inputs = [x]
    else:
        branches = []
        for b in ("a_", "b_"):
            nodes = _head(b)
            branches.append(helper.make_graph(nodes, f"{b}branch", [], [helper.make_tensor_value_info(
                f"{b}logits", TensorProto.FLOAT, [1, 40])]))
        nodes = [helper.make_node("If", ["cond"], ["logits"], then_branch=branches[0], else_branch=branches[1])]
        inputs = [x, helper.make_tensor_value_info("cond", TensorProto.BOOL, [1])]
    g = helper.make_graph(nodes, "head", inputs, [out], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def _run(model, x, cond=None):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"x": x} if cond is None else {"x": x, "cond": np.array([cond])}
    return sess.run(None, feed)[0]


def _ops(graph):
    ops = [n.op_type for n in graph.node]
    for n in graph.node:
        for a in n.attribute:
            if a.g is not None and a.g.node:
                ops += _ops(a.g)
    return ops


@pytest.mark.parametrize("in_if", [False, True])
def test_rewrite_keeps_the_logits_and_drops_the_per_run_dequantize(in_if):
    x = RNG.standard_normal((1, 16)).astype(np.float32)
    ref = x @ ((W.astype(np.float32) - float(ZP)) * SCALE).T
    model = _model(in_if)
    n = fuse_dequantize_matmul(model)
    ops = _ops(model.graph)
    assert n == (2 if in_if else 1)
    assert ops.count("DynamicQuantizeMatMul") == n
    assert "DequantizeLinear" not in ops and "Transpose" not in ops
    # one transposed uint8 copy of the weight, shared by both branches
    assert [i.name for i in model.graph.initializer].count("W_matmul_b") == 1
    for cond in ([True, False] if in_if else [None]):
        after = _run(model, x, cond)
        # the activation is quantized per run (8 bits): close to, not equal to, the float result
        np.testing.assert_allclose(after, ref, atol=0.05 * np.abs(ref).max())


def test_per_channel_scales_are_left_alone():
    model = _model(in_if=False, per_channel=True)
    assert fuse_dequantize_matmul(model) == 0
    assert "DequantizeLinear" in _ops(model.graph)
