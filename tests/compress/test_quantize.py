"""Quantization passes, graph preparation and calibration data: assert the graphs."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sdk.compress import (
    PASSES,
    CalibrationData,
    ConvertFP16,
    OptimizeGraph,
    PassContext,
    QuantizeDynamic,
    QuantizeInt4,
    QuantizeStatic,
    count_ops,
    upgrade_opset,
)
from sdk.compress.graph_prep import load_model, opset_version
from sdk.errors import CompressionError, ModelLoadError
from tests.compress.onnx_models import save_graph


def _run(path, feeds):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [sess.run(None, f)[0] for f in feeds]


def _cos(a, b):
    a, b = np.concatenate([x.ravel() for x in a]), np.concatenate([x.ravel() for x in b])
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_passes_are_registered_with_described_configs():
    for name in ("quantize_dynamic", "quantize_static", "quantize_int4", "fp16", "optimize_graph"):
        cls = PASSES[name]
        assert all(f.description for f in cls.Config.model_fields.values()), name


@pytest.mark.parametrize("model_fixture, expect", [
    ("tiny_cnn_path", {"ConvInteger": 2, "MatMulInteger": 1, "DynamicQuantizeLinear": 3}),
    ("tiny_mlp_path", {"MatMulInteger": 3, "DynamicQuantizeLinear": 3}),
])
def test_quantize_dynamic_graph(request, tmp_path, calib_feeds, model_fixture, expect):
    src = request.getfixturevalue(model_fixture)
    out = QuantizeDynamic().run(src, tmp_path / "q.onnx", PassContext(work_dir=tmp_path / "w")).path
    ops = count_ops(out)
    for op, n in expect.items():
        assert ops[op] == n, (op, ops)
    assert ops["Conv"] == 0 and ops["MatMul"] == 0
    feeds = calib_feeds(src, 4)
    assert _cos(_run(src, feeds), _run(out, feeds)) > 0.99


def test_quantize_static_qdq_counts_and_accuracy(tiny_cnn_path, tmp_path, calib_feeds):
    calib = CalibrationData(calib_feeds(tiny_cnn_path, 16))
    out = QuantizeStatic(format="QDQ").run(tiny_cnn_path, tmp_path / "q.onnx", PassContext(calib=calib)).path
    ops = count_ops(out)
    # 2 Conv + Gemm weights, their activations and the residual Add are wrapped in Q/DQ pairs
    assert ops["QuantizeLinear"] == 7 and ops["DequantizeLinear"] == 13, ops
    assert ops["Conv"] == 2 and ops["BatchNormalization"] == 0  # BN folded by pre-processing
    feeds = calib_feeds(tiny_cnn_path, 4, seed=9)
    assert _cos(_run(tiny_cnn_path, feeds), _run(out, feeds)) > 0.99


def test_quantize_static_qoperator_u8u8(tiny_cnn_path, tmp_path, calib_feeds):
    calib = CalibrationData(calib_feeds(tiny_cnn_path, 8))
    out = QuantizeStatic(format="QOperator", types="U8U8", calibrate_method="Percentile").run(
        tiny_cnn_path, tmp_path / "q.onnx", PassContext(calib=calib)).path
    ops = count_ops(out)
    assert ops["QLinearConv"] == 2 and ops["QLinearAdd"] == 1 and ops["QGemm"] == 1, ops
    assert ops["Conv"] == 0 and ops["QuantizeLinear"] == 1 and ops["DequantizeLinear"] == 1
    weights = [i for i in onnx.load(str(out)).graph.initializer if i.name.endswith("_quantized") and len(i.dims) == 4]
    assert weights and all(w.data_type == onnx.TensorProto.UINT8 for w in weights)


def test_nodes_and_op_types_kept_in_float(tiny_cnn_path, tmp_path, calib_feeds):
    calib = CalibrationData(calib_feeds(tiny_cnn_path, 8))
    out = QuantizeStatic(format="QOperator", nodes_to_exclude=["conv1"], op_types_to_keep_float=["Gemm"]).run(
        tiny_cnn_path, tmp_path / "q.onnx", PassContext(calib=calib)).path
    ops = count_ops(out)
    assert ops["QLinearConv"] == 1 and ops["Conv"] == 1 and ops["Gemm"] == 1 and ops["QGemm"] == 0, ops
    names = {n.name for n in onnx.load(str(out)).graph.node if n.op_type == "Conv"}
    assert names == {"conv1"}


def test_per_channel_upgrades_opset_11_and_loads(tiny_cnn_path, tmp_path, calib_feeds):
    assert opset_version(onnx.load(str(tiny_cnn_path))) == 11
    calib = CalibrationData(calib_feeds(tiny_cnn_path, 8))
    out = QuantizeStatic(per_channel=True).run(tiny_cnn_path, tmp_path / "q.onnx", PassContext(calib=calib)).path
    model = onnx.load(str(out))
    assert opset_version(model) >= 13
    axis_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
               and any(a.name == "axis" for a in n.attribute)]
    assert axis_dq, "per-channel weights need DequantizeLinear with axis"
    ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])  # loads: no 'Unrecognized attribute'


def test_upgrade_opset(tiny_cnn_path, tmp_path):
    out = upgrade_opset(tiny_cnn_path, tmp_path / "o13.onnx", 13)
    assert opset_version(onnx.load(str(out))) == 13


def test_static_without_calibration_is_an_error(tiny_cnn_path, tmp_path):
    with pytest.raises(CompressionError, match="calibration"):
        QuantizeStatic().run(tiny_cnn_path, tmp_path / "q.onnx", PassContext())


def test_int4_matmulnbits(tiny_mlp_path, tmp_path, calib_feeds):
    out = QuantizeInt4(block_size=32).run(tiny_mlp_path, tmp_path / "i4.onnx", PassContext()).path
    ops = count_ops(out)
    assert ops["MatMulNBits"] == 3 and ops["MatMul"] == 0, ops
    assert out.stat().st_size < tiny_mlp_path.stat().st_size / 4
    node = next(n for n in onnx.load(str(out)).graph.node if n.op_type == "MatMulNBits")
    attrs = {a.name: a.i for a in node.attribute}
    assert attrs["bits"] == 4 and attrs["block_size"] == 32 and attrs["K"] == 64 and attrs["N"] == 128
    feeds = calib_feeds(tiny_mlp_path, 4)
    assert _cos(_run(tiny_mlp_path, feeds), _run(out, feeds)) > 0.97


def test_int4_without_matmul_is_an_error(tiny_cnn_path, tmp_path):
    with pytest.raises(CompressionError, match="no MatMul"):
        QuantizeInt4().run(tiny_cnn_path, tmp_path / "i4.onnx", PassContext())


def test_fp16_keeps_float32_io(tiny_cnn_path, tmp_path, calib_feeds):
    out = ConvertFP16().run(tiny_cnn_path, tmp_path / "h.onnx", PassContext()).path
    m = onnx.load(str(out))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    big = [i for i in m.graph.initializer if len(i.dims) == 4]
    assert big and all(i.data_type == onnx.TensorProto.FLOAT16 for i in big)
    feeds = calib_feeds(tiny_cnn_path, 2)
    assert _cos(_run(tiny_cnn_path, feeds), _run(out, feeds)) > 0.999


def test_optimize_graph_folds_batchnorm(tiny_cnn_path, tmp_path):
    out = OptimizeGraph(level="extended").run(tiny_cnn_path, tmp_path / "o.onnx", PassContext()).path
    assert count_ops(out)["BatchNormalization"] == 0


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_tampered_model_gives_clear_error(tiny_cnn_path, tmp_path, damage):
    data = tiny_cnn_path.read_bytes()
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x08\x07garbage" + data[::-1][:500])
    with pytest.raises(ModelLoadError, match="broken.onnx"):
        load_model(bad)
    with pytest.raises((ModelLoadError, CompressionError), match="broken.onnx"):
        QuantizeDynamic().run(bad, tmp_path / "q.onnx", PassContext())


# --- calibration data --------------------------------------------------------------------
def test_calibration_npz_and_pickle_refused(tiny_cnn_path, tmp_path):
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "c.npz", input=x)
    feeds = CalibrationData.from_files(tmp_path / "c.npz").for_model(tiny_cnn_path)
    assert len(feeds) == 5 and feeds[0]["input"].shape == (1, 3, 32, 32)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        CalibrationData.from_files(tmp_path / "obj.npy")


def test_calibration_from_image_folder(tmp_path, tiny_cnn_path):
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"im{i}.png"), np.full((40, 50, 3), 40 * i, np.uint8))
    pre = lambda img: cv2.resize(img, (32, 32)).transpose(2, 0, 1)[None].astype(np.float32) / 255  # noqa: E731
    calib = CalibrationData.from_folder(tmp_path, pre, limit=2)
    feeds = calib.for_model(tiny_cnn_path)
    assert len(feeds) == 2 and feeds[1]["input"].shape == (1, 3, 32, 32)
    assert np.isclose(feeds[1]["input"].max(), 40 / 255)


def _stateful_model(path):
    """out = tanh(x.mean + state); stateN = 0.5*state + x.mean (a tiny recurrent cell)."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], keepdims=1, axes=[1]),
             helper.make_node("Add", ["m", "state"], ["s1"]),
             helper.make_node("Tanh", ["s1"], ["output"]),
             helper.make_node("Mul", ["state", "half"], ["hs"]),
             helper.make_node("Add", ["hs", "m"], ["stateN"])]
    g = helper.make_graph(nodes, "rnn", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16]),
                                         helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, 1])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1]),
                           helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [1, 1])],
                          initializer=[onnx.numpy_helper.from_array(np.array([[0.5]], np.float32), "half")])
    return save_graph(g, path)


def test_stateful_calibration_feeds_state_back(tmp_path):
    model = _stateful_model(tmp_path / "rnn.onnx")
    chunks = [np.full((1, 16), 1.0, np.float32) for _ in range(5)]
    calib = CalibrationData.stateful(model, chunks, state_map={"state": "stateN"})
    feeds = calib.materialize()
    states = [float(f["state"][0, 0]) for f in feeds]
    assert states[0] == 0.0
    assert all(s != 0.0 for s in states[1:])
    assert np.allclose(states, [0.0, 1.0, 1.5, 1.75, 1.875])  # 0.5*s + 1 fed back each chunk
    with pytest.raises(ValueError, match="stateN2"):
        CalibrationData.stateful(model, chunks, state_map={"state": "stateN2"})


def test_stateful_calibration_with_constants_quantizes(tmp_path):
    model = _stateful_model(tmp_path / "rnn.onnx")
    rng = np.random.default_rng(0)
    calib = CalibrationData.stateful(model, [rng.standard_normal((1, 16)).astype(np.float32) for _ in range(20)],
                                     state_map={"state": "stateN"})
    out = QuantizeStatic(op_types_to_quantize=["Add", "Mul"]).run(model, tmp_path / "q.onnx",
                                                                   PassContext(calib=calib)).path
    assert count_ops(out)["QuantizeLinear"] > 0


def test_preprocessing_reads_a_model_given_by_a_relative_path(tmp_path, tiny_cnn_path, monkeypatch, caplog):
    """The pre-processing step changes the working directory (onnxruntime drops scratch files
    there): a relative input path must still name the model, not a file in the output folder."""
    import logging
    import shutil

    from sdk.compress.graph_prep import is_preprocessed, prepare_for_quantization

    (tmp_path / "models").mkdir()
    shutil.copy(tiny_cnn_path, tmp_path / "models" / "m.onnx")
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="edgewise"):
        out = prepare_for_quantization("models/m.onnx", "out/prep.onnx")
    assert not [r for r in caplog.records if "pre-processing failed" in r.getMessage()]
    assert is_preprocessed(load_model(out, check=False))


@pytest.mark.parametrize("isa,expect_7bit", [({"avx2": True}, True),
                                             ({"avx2": True, "avx512_vnni": True}, False),
                                             ({"neon": True}, False)])
def test_quantize_int8_picks_7_bit_weights_exactly_on_x86_without_vnni(isa, expect_7bit, tiny_cnn_path, calib_feeds,
                                                                       tmp_path, monkeypatch):
    """On AVX2 without VNNI onnxruntime's u8 x s8 kernel saturates int16 with full 8-bit weights, so
    the default (reduce_range=None) is 7 bits there and 8 elsewhere; an explicit value wins. The
    Engine's load check agrees: only the 8-bit model is flagged, and only on that CPU."""
    import sdk.runtime
    from sdk.compress.quantize import QuantizeInt8
    from sdk.runtime.device import DeviceInfo
    from sdk.runtime.int8_weights import int8_weight_peak, saturation_warning

    device = DeviceInfo(isa=isa, machine="x86_64")
    monkeypatch.setattr(sdk.runtime, "discover_device", lambda: device)
    feeds = calib_feeds(tiny_cnn_path, 8)
    ctx = PassContext(calib=CalibrationData(feeds), work_dir=tmp_path / "w")
    auto = QuantizeInt8().run(tiny_cnn_path, tmp_path / "auto.onnx", ctx).path
    full = QuantizeInt8(reduce_range=False).run(tiny_cnn_path, tmp_path / "full.onnx", ctx).path
    peak_auto, peak_full = (int8_weight_peak(onnx.load(str(p))) for p in (auto, full))
    assert peak_full is not None and peak_full > 64         # 8-bit grid used when asked
    assert peak_auto is not None and (peak_auto <= 64) == expect_7bit, (isa, peak_auto)
    assert saturation_warning(onnx.load(str(auto)), device) is None
    assert (saturation_warning(onnx.load(str(full)), device) is not None) == expect_7bit
