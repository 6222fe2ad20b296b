"""The INT8 weight check at load: 8-bit weights flagged exactly on x86 CPUs without VNNI."""
from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.runtime import Engine
from sdk.runtime.device import DeviceInfo
from sdk.runtime.int8_weights import int8_weight_peak, saturation_warning

AVX2 = DeviceInfo(isa={"avx2": True, "fma": True}, machine="x86_64")
VNNI = DeviceInfo(isa={"avx2": True, "avx512f": True, "avx512_vnni": True}, machine="x86_64")
ARM = DeviceInfo(isa={"neon": True}, machine="aarch64")


def qdq_conv(peak: int, *, consumer: str = "Conv") -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(DQ(int8 weight with codes up to ``peak``)) -> Q -> DQ -> y (1x3x8x8 -> 1x4x8x8);
    ``consumer="Add"`` reads the dequantized constant with an Add instead (no integer kernel)."""
    rng = np.random.default_rng(0)
    codes = rng.integers(-peak, peak + 1, size=(4, 3, 3, 3)).astype(np.int8)
    codes.flat[0] = peak
    inits = [numpy_helper.from_array(codes, "w_q"), numpy_helper.from_array(np.float32(0.01), "w_s"),
             numpy_helper.from_array(np.int8(0), "w_z"), numpy_helper.from_array(np.float32(0.02), "x_s"),
             numpy_helper.from_array(np.uint8(128), "x_z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["x_q"]),
             helper.make_node("DequantizeLinear", ["x_q", "x_s", "x_z"], ["x_dq"]),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"])]
    if consumer == "Conv":
        nodes += [helper.make_node("Conv", ["x_dq", "w"], ["y_f"], pads=[1, 1, 1, 1]),
                  helper.make_node("QuantizeLinear", ["y_f", "x_s", "x_z"], ["y_q"]),
                  helper.make_node("DequantizeLinear", ["y_q", "x_s", "x_z"], ["y"])]
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    else:
        nodes.append(helper.make_node("Add", ["x_dq", "w"], ["y"]))
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def fp32_conv() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "fp32",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_peak_reads_the_weights_integer_kernels_see():
    assert int8_weight_peak(qdq_conv(127)) == 127
    assert int8_weight_peak(qdq_conv(64)) == 64
    assert int8_weight_peak(qdq_conv(127, consumer="Add")) is None   # not a matmul-like weight
    assert int8_weight_peak(fp32_conv()) is None


def test_peak_reads_the_optimized_qlinear_graph(tmp_path):
    """onnxruntime's saved optimized graph (QLinearConv) holds the same weights."""
    import onnxruntime as ort

    src, opt = tmp_path / "qdq.onnx", tmp_path / "opt.onnx"
    onnx.save(qdq_conv(127), str(src))
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(opt)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    m = onnx.load(str(opt))
    assert "QLinearConv" in {n.op_type for n in m.graph.node}
    assert int8_weight_peak(m) == 127


@pytest.mark.parametrize("device, flagged", [(AVX2, True), (VNNI, False), (ARM, False), (None, False)])
def test_warning_only_where_int16_sums_overflow(device, flagged):
    why = saturation_warning(qdq_conv(127), device)
    assert (why is not None) == flagged
    if flagged:
        assert "codes up to 127" in why and "reduce_range=True" in why
    assert saturation_warning(qdq_conv(64), device) is None          # 7-bit weights: safe everywhere


@pytest.mark.parametrize("as_bytes", [False, True])
def test_engine_warns_at_load_on_avx2_and_still_runs(as_bytes, tmp_path, monkeypatch, caplog):
    import sdk.runtime.device

    path = tmp_path / "q.onnx"
    onnx.save(qdq_conv(127), str(path))
    model = path.read_bytes() if as_bytes else path
    monkeypatch.setattr(sdk.runtime.device, "discover_device", lambda: AVX2)
    with caplog.at_level(logging.WARNING, logger="edgewise"):
        eng = Engine(model, warmup=0, label=f"q-{as_bytes}")
        again = Engine(model, warmup=0, label=f"q-{as_bytes}")
    assert eng.int8_warning is not None and "no VNNI" in eng.int8_warning and again.int8_warning == eng.int8_warning
    assert sum("no VNNI" in r.getMessage() for r in caplog.records) == 1     # logged once per model
    assert eng.run(np.zeros((1, 3, 8, 8), np.float32))["y"].shape == (1, 4, 8, 8)
    monkeypatch.setattr(sdk.runtime.device, "discover_device", lambda: VNNI)
    assert Engine(model, warmup=0).int8_warning is None
    monkeypatch.setattr(sdk.runtime.device, "discover_device", lambda: AVX2)
    safe = tmp_path / "safe.onnx"
    onnx.save(qdq_conv(64), str(safe))
    assert Engine(safe, warmup=0).int8_warning is None


def test_inspect_reports_the_peak_and_the_risk_here(tmp_path, monkeypatch, capsys):
    import json

    import sdk.runtime
    from sdk.cli.main import main

    path = tmp_path / "q.onnx"
    onnx.save(qdq_conv(127), str(path))
    monkeypatch.setattr(sdk.runtime, "discover_device", lambda: AVX2)
    assert main(["inspect", str(path), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["int8_weights"]
    assert got["peak"] == 127 and got["isa_profile"] == "avx2" and "overflows past 64" in got["warning_here"]
    monkeypatch.setattr(sdk.runtime, "discover_device", lambda: VNNI)
    assert main(["inspect", str(path)]) == 0
    assert "codes up to 127 (8-bit); safe on this CPU (vnni)" in capsys.readouterr().out
    onnx.save(fp32_conv(), str(path))
    assert main(["inspect", str(path), "--json"]) == 0
    assert "int8_weights" not in json.loads(capsys.readouterr().out)


def _saturation_bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "int8_saturation.py"
    spec = importlib.util.spec_from_file_location("int8_saturation", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_saturation_emulation_exact_path_matches_onnxruntime_and_clips_pairs():
    """benchmarks/int8_saturation.py: its exact MatMulInteger equals onnxruntime's bit for bit
    (zero points included); its AVX2 path clips each pair sum to int16."""
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    bench = _saturation_bench()
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (5, 7, 16), dtype=np.uint8)
    b = rng.integers(-127, 128, (16, 6), dtype=np.int8)
    g = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])], "mmi",
                          [helper.make_tensor_value_info("a", TensorProto.UINT8, [5, 7, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
                          [numpy_helper.from_array(b, "b"), numpy_helper.from_array(np.uint8(131), "az"),
                           numpy_helper.from_array(np.int8(0), "bz")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"a": a})[0]
    exact = ReferenceEvaluator(m, new_ops=bench.make_ops(False)).run(None, {"a": a})[0]
    assert np.array_equal(exact, want)
    full = np.full((1, 4), 255, np.uint8), np.full((4, 1), 127, np.int8)
    assert int(bench.pair_gemm(*full, saturate=False)[0, 0]) == 4 * 255 * 127
    assert int(bench.pair_gemm(*full, saturate=True)[0, 0]) == 2 * 32767      # two pairs, each clipped
