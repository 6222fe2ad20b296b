"""`edgewise devices | inspect | bench` with --json, and their exit codes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sdk.cli.main import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_devices_json(capsys):
    code, out, _ = _run(capsys, "devices", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["device"]["logical_cores"] >= 1
    assert data["presets"]["cpu"] == {"provider": "CPUExecutionProvider", "available": True}
    assert set(data["presets"]) >= {"cuda", "tensorrt", "openvino", "coreml", "nnapi", "qnn", "directml"}


def test_devices_human(capsys):
    code, out, _ = _run(capsys, "devices")
    assert code == 0 and "execution providers" in out and "CPUExecutionProvider" in out


def test_inspect_json_tiny(capsys, conv_model_path):
    code, out, _ = _run(capsys, "inspect", str(conv_model_path), "--json")
    assert code == 0
    m = json.loads(out)["model"]
    assert m["params"] == 20714 and m["flops"] == 151552 and m["opset"] == 17
    assert m["inputs"] == [{"name": "x", "dtype": "float32", "shape": [1, 3, 16, 16]}]
    assert m["op_histogram"]["Conv"] == 1


def test_inspect_human(capsys, conv_model_path):
    code, out, _ = _run(capsys, "inspect", str(conv_model_path))
    assert code == 0 and "parameters  20,714" in out and "Gemm" in out


def test_bench_json_tiny(capsys, tiny_model_path):
    code, out, _ = _run(capsys, "bench", str(tiny_model_path), "--iters", "10", "--warmup", "1",
                        "--threads", "1", "--json")
    assert code == 0
    rep = json.loads(out)
    assert rep["latency"]["count"] == 10 and rep["providers"] == ["CPUExecutionProvider"]
    assert rep["energy"]["source"] in ("rapl", "estimate") and rep["threads"] == 1


def test_bench_falls_back_and_no_fallback_exit_code(capsys, tiny_model_path, monkeypatch):
    from sdk.runtime import providers

    monkeypatch.setattr(providers, "available_providers", lambda: ["CPUExecutionProvider"])
    code, out, _ = _run(capsys, "bench", str(tiny_model_path), "--iters", "2", "--providers", "cuda,cpu", "--json")
    assert code == 0 and json.loads(out)["providers"] == ["CPUExecutionProvider"]
    code, _, err = _run(capsys, "bench", str(tiny_model_path), "--iters", "2", "--providers", "cuda", "--no-fallback")
    assert code == 4 and "available providers" in err


@pytest.mark.parametrize("command", ["inspect", "bench"])
def test_exit_codes_missing_and_corrupt(capsys, tmp_path, conv_model_path, command):
    code, _, err = _run(capsys, command, str(tmp_path / "missing.onnx"))
    assert code == 2 and "missing.onnx" in err
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(conv_model_path.read_bytes()[:500])
    code, _, err = _run(capsys, command, str(bad))
    assert code == 3 and "corrupt.onnx" in err


def test_bench_bad_usage(capsys, tiny_model_path):
    code, _, err = _run(capsys, "bench", str(tiny_model_path), "--iters", "0")
    assert code == 2 and "--iters" in err
    code, _, err = _run(capsys, "bench", str(tiny_model_path), "--shape", "x:1,4")
    assert code == 2 and "NAME=D1,D2" in err


def test_inspect_and_bench_ppocr(capsys, ppocr_det_path):
    code, out, _ = _run(capsys, "inspect", str(ppocr_det_path), "--shape", "x=1,3,640,640", "--json")
    assert code == 0
    m = json.loads(out)["model"]
    assert m["opset"] == 12 and m["params"] > 1_000_000 and m["flops"] > 1e9
    assert m["inputs"][0]["name"] == "x" and m["inputs"][0]["shape"][1] == 3
    code, out, _ = _run(capsys, "bench", str(ppocr_det_path), "--iters", "3", "--warmup", "1",
                        "--shape", "x=1,3,320,320", "--json")
    assert code == 0
    rep = json.loads(out)
    assert rep["input_shapes"] == {"x": [1, 3, 320, 320]} and rep["latency"]["count"] == 3
    assert rep["flops"] > 1e9 / 4


def test_console_entry_point(tiny_model_path):
    """The real process: `python -m sdk.cli.main devices --json` prints JSON and exits 0."""
    proc = subprocess.run([sys.executable, "-m", "sdk.cli.main", "devices", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "available_providers" in json.loads(proc.stdout)["device"]


@pytest.fixture
def conv_bundle(tmp_path, conv_model_path):
    bundle = pytest.importorskip("sdk.bundle", reason="sdk.bundle not available")
    m = bundle.Manifest(name="conv-test", version="1.0.0", task="classification",
                        models={"model": bundle.ModelEntry(file="model.onnx")},
                        labels=[f"c{i}" for i in range(10)], metrics={"val_acc": 0.5})
    return bundle.save_bundle(tmp_path / "conv-bundle", m, files={"model.onnx": conv_model_path}).path


def test_inspect_and_bench_bundle(capsys, conv_bundle):
    code, out, _ = _run(capsys, "inspect", str(conv_bundle), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["bundle"]["name"] == "conv-test" and data["bundle"]["models"] == {"model": "model.onnx"}
    assert data["model"]["flops"] == 151552
    code, out, _ = _run(capsys, "bench", str(conv_bundle), "--iters", "3", "--json")
    assert code == 0 and json.loads(out)["model"] == "conv-test 1.0.0"


def test_tampered_bundle_exit_code(capsys, conv_bundle):
    model = conv_bundle / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-10] ^= 0x01  # one bit in the weights: only the hash can tell
    model.write_bytes(bytes(data))
    for command in ("inspect", "bench"):
        code, _, err = _run(capsys, command, str(conv_bundle))
        assert code == 3 and "model.onnx" in err


def test_bench_with_real_inputs_npz(capsys, tmp_path, silero_vad_path):
    import numpy as np

    npz = tmp_path / "vad_inputs.npz"
    np.savez(npz, input=np.zeros((1, 576), np.float32), state=np.zeros((2, 1, 128), np.float32),
             sr=np.array(16000, dtype=np.int64))
    code, out, _ = _run(capsys, "bench", str(silero_vad_path), "--inputs", str(npz), "--iters", "5", "--json")
    assert code == 0 and json.loads(out)["input_shapes"]["state"] == [2, 1, 128]
    bad = tmp_path / "objects.npz"
    np.savez(bad, input=np.array([object()], dtype=object))
    code, _, err = _run(capsys, "bench", str(silero_vad_path), "--inputs", str(bad))
    assert code == 2 and "--inputs" in err
