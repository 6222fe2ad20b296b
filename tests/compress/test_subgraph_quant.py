"""INT4 inside If branches, and the float reference rebuilt from a dynamic-INT8 model.

The model here has the structure of Optimum's merged Whisper decoder in small: an ``If``
on a bool input whose two branches read MatMul weights from the main graph's
initializers (one weight shared by both branches, as the merged decoder shares them).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.compress import QuantizeDynamic, QuantizeInt4
from sdk.compress.base import PassContext
from sdk.compress.dequantize import dequantize_dynamic, dequantize_file
from sdk.errors import CompressionError
from sdk.graphs import count_ops_deep, iter_graphs

K, N = 64, 48


def build_if_model(seed: int = 0) -> onnx.ModelProto:
    """out = If(use_cache, then: (x @ W_shared) @ W_then, else: (x @ W_shared) @ W_else + x @ W_skip)."""
    rng = np.random.default_rng(seed)
    w = lambda k, n: (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    inits = [numpy_helper.from_array(w(K, N), "W_shared"), numpy_helper.from_array(w(N, N), "W_then"),
             numpy_helper.from_array(w(N, N), "W_else"), numpy_helper.from_array(w(K, N), "W_skip")]
    out = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
    then = helper.make_graph([helper.make_node("MatMul", ["x", "W_shared"], ["t0"], name="then_mm0"),
                              helper.make_node("MatMul", ["t0", "W_then"], ["t_out"], name="then_mm1")],
                             "then_branch", [], [out("t_out")])
    other = helper.make_graph([helper.make_node("MatMul", ["x", "W_shared"], ["t0"], name="else_mm0"),
                               helper.make_node("MatMul", ["t0", "W_else"], ["e1"], name="else_mm1"),
                               helper.make_node("MatMul", ["x", "W_skip"], ["e2"], name="else_mm2"),
                               helper.make_node("Add", ["e1", "e2"], ["e_out"], name="else_add")],
                              "else_branch", [], [out("e_out")])
    graph = helper.make_graph(
        [helper.make_node("If", ["use_cache"], ["y"], name="optimum::if", then_branch=then, else_branch=other)],
        "if_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, K]),
         helper.make_tensor_value_info("use_cache", TensorProto.BOOL, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, N])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _run(path: Path, x: np.ndarray, flag: bool) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x, "use_cache": np.array([flag])})[0]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture()
def if_model(tmp_path) -> Path:
    p = tmp_path / "if_model.onnx"
    onnx.save(build_if_model(), p)
    return p


def test_int4_quantizes_matmuls_inside_if_branches(if_model, tmp_path):
    out = QuantizeInt4(block_size=32).run(if_model, tmp_path / "int4.onnx", PassContext(work_dir=tmp_path)).path
    m = onnx.load(out)
    ops = count_ops_deep(m)
    assert ops["MatMulNBits"] == 5 and ops["MatMul"] == 0     # every branch MatMul, none left float
    packed = [t.name for g in iter_graphs(m.graph) for t in g.initializer if t.name.endswith("_Q4")]
    assert len(packed) == 4                                    # W_shared packed once for both branches
    floats = [t.name for g in iter_graphs(m.graph) for t in g.initializer if t.data_type == TensorProto.FLOAT
              and not t.name.endswith("_scales")]
    assert floats == []                                        # the float weights are gone
    x = np.random.default_rng(1).standard_normal((1, 5, K)).astype(np.float32)
    for flag in (True, False):
        ref, got = _run(if_model, x, flag), _run(out, x, flag)
        assert 0.98 < _cos(ref, got) < 1.0 - 1e-7            # 4-bit error, in both branches


def test_int4_refuses_a_model_without_matmul_weights(tmp_path):
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    p = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), p)
    with pytest.raises(CompressionError, match="no MatMul with a constant 2-D float weight"):
        QuantizeInt4().run(p, tmp_path / "o.onnx", PassContext(work_dir=tmp_path))


def test_dequantize_undoes_dynamic_int8_in_if_branches(if_model, tmp_path):
    q = QuantizeDynamic(op_types_to_quantize=["MatMul"], preprocess=False, reduce_range=False,  # the 8-bit grid
                        extra_options={"EnableSubgraph": True}).run(if_model, tmp_path / "q.onnx",
                                                                    PassContext(work_dir=tmp_path)).path
    assert count_ops_deep(onnx.load(q))["MatMulInteger"] == 5
    ref = dequantize_file(q, tmp_path / "ref.onnx")
    assert ref == {"dequantized": 5, "integer_left": 0}
    m = onnx.load(tmp_path / "ref.onnx")
    ops = count_ops_deep(m)
    assert ops["MatMul"] == 5
    assert not {"MatMulInteger", "DynamicQuantizeLinear", "Cast"} & set(ops)
    # the float weights are the shipped int8 grid: (W_q - zp) * scale, each made once
    qm = onnx.load(q)
    qinit = {t.name: numpy_helper.to_array(t) for g in iter_graphs(qm.graph) for t in g.initializer}
    rinit = {t.name: numpy_helper.to_array(t) for g in iter_graphs(m.graph) for t in g.initializer}
    assert sorted(rinit) == ["W_else", "W_shared", "W_skip", "W_then"]
    grid = (qinit["W_shared_quantized"].astype(np.float32) - qinit["W_shared_zero_point"]) * qinit["W_shared_scale"]
    np.testing.assert_array_equal(rinit["W_shared"], grid)
    orig = {t.name: numpy_helper.to_array(t) for t in build_if_model().graph.initializer}
    step = float(qinit["W_shared_scale"])
    assert np.abs(rinit["W_shared"] - orig["W_shared"]).max() <= step / 2 + 1e-7
    x = np.random.default_rng(2).standard_normal((1, 5, K)).astype(np.float32)
    for flag in (True, False):
        assert _cos(_run(if_model, x, flag), _run(tmp_path / "ref.onnx", x, flag)) > 0.9999


def test_dequantize_conv_integer_per_channel(tmp_path):
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((6, 3, 3)) * 0.4).astype(np.float32)
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1])], "c",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 20])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 20])],
                          initializer=[numpy_helper.from_array(w, "w")])
    src = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), src)
    q = QuantizeDynamic(op_types_to_quantize=["Conv"], per_channel=True, preprocess=False,
                        reduce_range=False).run(   # the 8-bit grid on every CPU
        src, tmp_path / "q.onnx", PassContext(work_dir=tmp_path)).path
    m = onnx.load(q)
    assert dequantize_dynamic(m) == 1
    ops = count_ops_deep(m)
    assert ops["Conv"] == 1 and "ConvInteger" not in ops
    back = numpy_helper.to_array(next(t for t in m.graph.initializer if t.data_type == TensorProto.FLOAT
                                      and t.dims == [6, 3, 3]))
    assert np.abs(back - w).max() <= np.abs(w).max(axis=(1, 2)).max() / 127 / 2 + 1e-6
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    assert [a.name for a in conv.attribute] == ["pads"]


def test_dequantize_refuses_a_float_model(if_model, tmp_path):
    with pytest.raises(CompressionError, match="no MatMulInteger/ConvInteger chain"):
        dequantize_file(if_model, tmp_path / "x.onnx")


def test_int4_packs_a_tied_output_projection_and_keeps_the_table(tmp_path):
    """logits = h @ Transpose(E) with E also an embedding table (Gather): E^T is packed, E stays."""
    rng = np.random.default_rng(4)
    table = (rng.standard_normal((40, K)) * 0.2).astype(np.float32)     # vocab 40, d K
    g = helper.make_graph(
        [helper.make_node("Gather", ["E", "ids"], ["h"], name="embed"),
         helper.make_node("Transpose", ["E"], ["E_T"], name="tie", perm=[1, 0]),
         helper.make_node("MatMul", ["h", "E_T"], ["logits"], name="proj_out")], "tied",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 40])],
        initializer=[numpy_helper.from_array(table, "E")])
    src = tmp_path / "tied.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), src)
    out = QuantizeInt4(block_size=32).run(src, tmp_path / "q.onnx", PassContext(work_dir=tmp_path)).path
    m = onnx.load(out)
    ops = count_ops_deep(m)
    assert ops["MatMulNBits"] == 1 and ops["Gather"] == 1 and "MatMul" not in ops and "Transpose" not in ops
    assert "E" in {t.name for t in m.graph.initializer}
    ids = np.array([[1, 7, 30]], np.int64)
    ref = ort.InferenceSession(str(src)).run(None, {"ids": ids})[0]
    got = ort.InferenceSession(str(out)).run(None, {"ids": ids})[0]
    assert _cos(ref, got) > 0.98


def test_int8_embeddings_inside_if_branches(tmp_path):
    """The tied model inside both branches of an If: int8 table behind each Gather, E^T packed int4."""
    rng = np.random.default_rng(5)
    table = (rng.standard_normal((40, K)) * 0.2).astype(np.float32)

    def branch(tag: str) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node("Gather", ["E", "ids"], [f"h_{tag}"], name=f"embed_{tag}"),
             helper.make_node("Transpose", ["E"], [f"E_T_{tag}"], name=f"tie_{tag}", perm=[1, 0]),
             helper.make_node("MatMul", [f"h_{tag}", f"E_T_{tag}"], [f"y_{tag}"], name=f"proj_{tag}")],
            tag, [], [helper.make_tensor_value_info(f"y_{tag}", TensorProto.FLOAT, None)])
    g = helper.make_graph(
        [helper.make_node("If", ["flag"], ["logits"], then_branch=branch("a"), else_branch=branch("b"))], "m",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3]),
         helper.make_tensor_value_info("flag", TensorProto.BOOL, [1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 40])],
        initializer=[numpy_helper.from_array(table, "E")])
    src = tmp_path / "m.onnx"
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, src)
    out = QuantizeInt4(block_size=32, int8_embeddings=True).run(src, tmp_path / "q.onnx",
                                                                PassContext(work_dir=tmp_path)).path
    q = onnx.load(out)
    ops = count_ops_deep(q)
    assert ops["MatMulNBits"] == 2 and ops["DequantizeLinear"] == 2 and "MatMul" not in ops
    kinds = {t.name: t.data_type for t in q.graph.initializer}
    assert "E" not in kinds and kinds["E_int8"] == TensorProto.INT8      # no float copy of the table left
    ids = np.array([[1, 7, 30]], np.int64)
    for flag in (True, False):
        feeds = {"ids": ids, "flag": np.array([flag])}
        ref = ort.InferenceSession(str(src)).run(None, feeds)[0]
        got = ort.InferenceSession(str(out)).run(None, feeds)[0]
        assert _cos(ref, got) > 0.98
