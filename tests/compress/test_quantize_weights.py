"""Weight-only quantization: the graph stores int8/int4 weights, outputs stay close to FP32."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper

from sdk.compress import PassContext, QuantizeWeights, Recipe, WeightQuantizer
from sdk.compress.quantize_weights import quantize_per_axis
from sdk.errors import CompressionError


def _cos(a, b):
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


def _outputs(path, feeds):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [s.run(None, f)[0] for f in feeds]


def test_per_axis_quantization_round_trips_within_half_a_step():
    w = np.random.default_rng(0).normal(size=(8, 3, 3, 3)).astype(np.float32)
    q, scale = quantize_per_axis(w, 0)
    assert q.dtype == np.int8 and scale.shape == (8,)
    err = np.abs(q * scale.reshape(-1, 1, 1, 1) - w)
    assert (err <= scale.reshape(-1, 1, 1, 1) / 2 + 1e-7).all()
    assert np.abs(q).max() == 127


def test_int8_weights_graph_and_outputs(tiny_cnn_path, calib_feeds, tmp_path):
    ctx = PassContext()
    res = QuantizeWeights().run(tiny_cnn_path, tmp_path / "w8.onnx", ctx)
    out = res.path
    m, src = onnx.load(str(out)), onnx.load(str(tiny_cnn_path))
    weighted = [n for n in src.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    big = {i.name for i in src.graph.initializer if numpy_helper.to_array(i).size >= 64}
    expected = sum(1 for n in weighted if n.input[1] in big)
    casts = [n for n in m.graph.node if n.op_type == "Cast"]
    assert len(casts) == expected == res.report["int8"] > 0
    int8 = [i for i in m.graph.initializer if i.data_type == TensorProto.INT8]
    assert len(int8) == expected
    assert not ({i.name for i in m.graph.initializer} & big), "float copies of quantized weights remain"
    # int8 alone needs no opset upgrade (Cast from int8 exists since opset 6)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == 11
    feeds = calib_feeds(tiny_cnn_path, n=4)
    for ya, yb in zip(_outputs(tiny_cnn_path, feeds), _outputs(out, feeds), strict=True):
        assert _cos(ya, yb) > 0.999


def test_int4_nodes_are_packed_int4_and_upgrade_the_opset(tiny_mlp_path, calib_feeds, tmp_path):
    ctx = PassContext(calib=calib_feeds(tiny_mlp_path, n=256))
    res = QuantizeWeights(low_bit_nodes=["matmul0", "matmul1"], calib_samples=256).run(tiny_mlp_path,
                                                                                         tmp_path / "w4.onnx", ctx)
    out = res.path
    m = onnx.load(str(out))
    by_type = {}
    for i in m.graph.initializer:
        by_type.setdefault(i.data_type, []).append(i.name)
    assert len(by_type[TensorProto.INT4]) == 2 and len(by_type[TensorProto.INT8]) == 1
    assert res.report["int4_nodes"] == ["matmul0", "matmul1"]
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 21 and m.ir_version >= 10
    int4 = next(i for i in m.graph.initializer if i.data_type == TensorProto.INT4)
    assert len(int4.raw_data) == (np.prod(int4.dims) + 1) // 2          # two values per byte
    codes = numpy_helper.to_array(int4).astype(np.int8)
    assert codes.min() >= -7 and codes.max() <= 7
    feeds = calib_feeds(tiny_mlp_path, n=8, seed=5)
    for ya, yb in zip(_outputs(tiny_mlp_path, feeds), _outputs(out, feeds), strict=True):
        assert _cos(ya, yb) > 0.98


def test_gptq_and_bias_correction_beat_plain_rounding(tiny_cnn_path, calib_feeds, tmp_path):
    calib = calib_feeds(tiny_cnn_path, n=16)
    held = calib_feeds(tiny_cnn_path, n=8, seed=9)
    ref = _outputs(tiny_cnn_path, held)

    def err(path):
        return float(np.mean([np.mean((a - b) ** 2) for a, b in zip(ref, _outputs(path, held), strict=True)]))

    plain = QuantizeWeights(bits=4, rounding="nearest", bias_correction=False, min_elements=16).run(
        tiny_cnn_path, tmp_path / "plain.onnx", PassContext()).path
    ctx = PassContext(calib=calib)
    res = QuantizeWeights(bits=4, min_elements=16).run(tiny_cnn_path, tmp_path / "gptq.onnx", ctx)
    smart = res.path
    assert res.report["gptq"] and res.report["bias_correction"]
    assert err(smart) < 0.7 * err(plain), (err(smart), err(plain))
    # bias correction wrote new biases
    b_src = numpy_helper.to_array(next(i for i in onnx.load(str(tiny_cnn_path)).graph.initializer if i.name == "b2"))
    b_new = numpy_helper.to_array(next(i for i in onnx.load(str(smart)).graph.initializer if i.name == "b2"))
    assert not np.allclose(b_src, b_new)


def test_recipe_round_trips_and_shrinks(tiny_cnn_path, tmp_path):
    r = Recipe.from_file(_write(tmp_path / "r.yaml", "- pass: quantize_weights\n  min_elements: 16\n"))
    out = r.apply(tiny_cnn_path, tmp_path / "o.onnx").path
    assert out.stat().st_size < tiny_cnn_path.stat().st_size


def test_bad_requests_say_what_was_expected(tiny_cnn_path, tmp_path):
    with pytest.raises(CompressionError, match="low-bit nodes"):
        QuantizeWeights(low_bit_nodes=["no_such_node"]).run(tiny_cnn_path, tmp_path / "x.onnx", PassContext())
    with pytest.raises(CompressionError, match="needs calibration"):
        WeightQuantizer(tiny_cnn_path, rounding="gptq")
    with pytest.raises(Exception, match="bits"):
        QuantizeWeights(bits=3)


def test_tampered_model_is_refused(tiny_cnn_path, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(tiny_cnn_path.read_bytes()[:300])
    from sdk.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="bad.onnx"):
        QuantizeWeights().run(bad, tmp_path / "x.onnx", PassContext())


def test_yolox_int8_shrinks_over_3x_and_runs(yolox_path, tmp_path):
    out = QuantizeWeights().run(yolox_path, tmp_path / "y.onnx", PassContext()).path
    assert yolox_path.stat().st_size / out.stat().st_size > 3.0
    s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = s.run(None, {"images": np.zeros((1, 3, 416, 416), np.float32)})[0]
    assert y.shape == (1, 3549, 85) and np.isfinite(y).all()


def _write(p, text):
    p.write_text(text)
    return p


def test_weights_held_in_constant_nodes_are_found(tiny_cnn_path, calib_feeds, tmp_path):
    """paddle2onnx (PP-OCR) keeps every weight in a Constant node, not an initializer."""
    from onnx import helper

    m = onnx.load(str(tiny_cnn_path))
    consts = [helper.make_node("Constant", [], [i.name], value=i) for i in m.graph.initializer]
    del m.graph.initializer[:]
    nodes = consts + list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    src = tmp_path / "const.onnx"
    onnx.save(m, str(src))
    ctx = PassContext()
    res = QuantizeWeights().run(src, tmp_path / "w8.onnx", ctx)
    out = res.path
    assert res.report["int8"] == 3            # conv1 (216), conv2 (576), fc (80 elements)
    assert not [n for n in onnx.load(str(out)).graph.node if n.op_type == "Constant"]
    feeds = calib_feeds(tiny_cnn_path, n=2)
    for ya, yb in zip(_outputs(tiny_cnn_path, feeds), _outputs(out, feeds), strict=True):
        assert _cos(ya, yb) > 0.999


def test_initializers_listed_as_graph_inputs_leave_with_them(tiny_cnn_path, tmp_path):
    """IR < 4 models list every initializer among the graph inputs; a replaced weight must not
    stay behind as a required input."""
    from onnx import helper

    m = onnx.load(str(tiny_cnn_path))
    m.graph.input.extend([helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
                          for i in m.graph.initializer])
    src = tmp_path / "ir3.onnx"
    onnx.save(m, str(src))
    out = QuantizeWeights().run(src, tmp_path / "w8.onnx", PassContext()).path
    s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == ["input"]
    assert s.run(None, {"input": np.zeros((1, 3, 32, 32), np.float32)})[0].shape == (1, 10)
