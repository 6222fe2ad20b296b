"""Weight-only INT8: the graph stores int8 weights, outputs stay close to FP32."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from sdk.compress import PassContext, QuantizeWeightsInt8, Recipe
from sdk.compress.quantize_weights import quantize_per_axis


def test_per_axis_quantization_round_trips_within_half_a_step():
    w = np.random.default_rng(0).normal(size=(8, 3, 3, 3)).astype(np.float32)
    q, scale = quantize_per_axis(w, 0)
    assert q.dtype == np.int8 and scale.shape == (8,)
    err = np.abs(q * scale.reshape(-1, 1, 1, 1) - w)
    assert (err <= scale.reshape(-1, 1, 1, 1) / 2 + 1e-7).all()


def test_weights_become_int8_and_outputs_stay_close(tiny_cnn_path, calib_feeds, tmp_path):
    ctx = PassContext()
    out = QuantizeWeightsInt8().run(tiny_cnn_path, tmp_path / "w8.onnx", ctx)
    m = onnx.load(str(out))
    src = onnx.load(str(tiny_cnn_path))
    weighted = [n for n in src.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    big = {i.name for i in src.graph.initializer if numpy_helper.to_array(i).size >= 64}
    expected = sum(1 for n in weighted if n.input[1] in big)
    assert len(dq) == expected == ctx.extra["quantize_weights_int8"]["weights"] > 0
    int8 = [i for i in m.graph.initializer if i.data_type == onnx.TensorProto.INT8 and i.name.endswith("_i8")]
    assert len(int8) == expected
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 13
    a = ort.InferenceSession(str(tiny_cnn_path), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for feeds in calib_feeds(tiny_cnn_path, n=4):
        ya, yb = a.run(None, feeds)[0], b.run(None, feeds)[0]
        cos = float((ya * yb).sum() / (np.linalg.norm(ya) * np.linalg.norm(yb)))
        assert cos > 0.999, cos


def test_weight_only_recipe_round_trips_and_shrinks(tiny_cnn_path, tmp_path):
    r = Recipe.from_file(_write(tmp_path / "r.yaml", "- pass: quantize_weights_int8\n  min_elements: 16\n"))
    out = r.apply(tiny_cnn_path, tmp_path / "o.onnx")
    assert out.stat().st_size < tiny_cnn_path.stat().st_size


def test_yolox_weights_shrink_over_3x(yolox_path, tmp_path):
    out = QuantizeWeightsInt8().run(yolox_path, tmp_path / "y.onnx", PassContext())
    assert yolox_path.stat().st_size / out.stat().st_size > 3.0
    s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = s.run(None, {"images": np.zeros((1, 3, 416, 416), np.float32)})[0]
    assert y.shape == (1, 3549, 85) and np.isfinite(y).all()


def _write(p, text):
    p.write_text(text)
    return p
