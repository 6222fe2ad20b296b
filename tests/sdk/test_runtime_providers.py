"""The ``openvino`` preset: the OpenVINO plugin EP where it is installed, the CPU (with one
message naming what to install) where it is not."""
from __future__ import annotations

import importlib.util
import json
import logging

import numpy as np
import pytest

import sdk.runtime.providers as providers_mod
from sdk.errors import ProviderUnavailableError
from sdk.runtime import Engine, EngineOptions, resolve_providers

OV = "OpenVINOExecutionProvider"


def _openvino_cpu_missing() -> str | None:
    """Why the OpenVINO EP cannot run on this CPU here (None when it can)."""
    import onnxruntime as ort

    builtin = OV in ort.get_available_providers() and OV not in providers_mod._plugin_providers
    if not builtin and importlib.util.find_spec("onnxruntime_ep_openvino") is None:
        return ("neither onnxruntime-ep-openvino (pip install 'edgewise[openvino]') "
                "nor onnxruntime-openvino is installed")
    why = providers_mod.register_plugin("openvino")
    if why:
        return why
    if OV in providers_mod._plugin_providers and not providers_mod.plugin_devices(OV, {"device_type": "CPU"}):
        return "the OpenVINO plugin lists no CPU device on this machine (seen on AMD hosts)"
    return None


@pytest.fixture
def openvino_cpu():
    why = _openvino_cpu_missing()
    if why:
        pytest.skip(why)


@pytest.fixture
def no_openvino(monkeypatch):
    """A process where neither the plugin package nor a built-in OpenVINO EP exists."""
    monkeypatch.setattr(providers_mod, "_warned", set())
    monkeypatch.setattr(providers_mod, "_plugin_state", {})
    monkeypatch.setattr(providers_mod, "_plugin_providers", set())
    monkeypatch.setattr(providers_mod, "_PLUGINS", {"openvino": ("edgewise_tests_no_such_plugin", "x")})
    monkeypatch.setattr(providers_mod, "available_providers", lambda: ["CPUExecutionProvider"])


def test_openvino_engine_matches_cpu(openvino_cpu, conv_model_path):
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with Engine(conv_model_path, EngineOptions(providers=["cpu"])) as cpu, \
            Engine(conv_model_path, EngineOptions(providers=["openvino"])) as ov:
        assert ov.providers[0] == OV and cpu.providers == ["CPUExecutionProvider"]
        a, b = cpu.run_list({cpu.inputs[0].name: x}), ov.run_list({ov.inputs[0].name: x})
    # the preset asks for FP32 (OpenVINO would pick bf16 on AMX / AVX512-BF16 CPUs)
    assert np.abs(a[0] - b[0]).max() <= 1e-4 * max(1.0, float(np.abs(a[0]).max()))


@pytest.mark.shared
def test_openvino_yolox_matches_cpu(openvino_cpu, yolox_path):
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    with Engine(yolox_path) as cpu, Engine(yolox_path, EngineOptions(providers=["openvino"])) as ov:
        assert ov.providers[0] == OV
        diff = np.abs(cpu.run(x)["output"] - ov.run(x)["output"]).max()
    assert diff < 1e-3  # measured 1.7e-5 (plugin 1.8.1) / 1.6e-5 (onnxruntime-openvino 1.24.1); bf16: 0.58


def test_plugin_options_translate_precision_and_device():
    got = providers_mod._plugin_options(OV, {"device_type": "CPU", "precision": "FP32", "num_streams": 1})
    assert got == {"load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": "f32"}}), "num_streams": "1"}
    assert json.loads(providers_mod._plugin_options(OV, {"precision": "ACCURACY"})["load_config"]) == \
        {"CPU": {"EXECUTION_MODE_HINT": "ACCURACY"}}
    own = json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}})  # the caller's load_config wins
    assert providers_mod._plugin_options(OV, {"precision": "FP32", "load_config": own}) == {"load_config": own}


def test_openvino_absent_falls_back_with_one_message(no_openvino, caplog, tiny_model_path):
    with caplog.at_level(logging.WARNING, logger="edgewise"):
        for _ in range(2):
            assert resolve_providers(["openvino"]) == [("CPUExecutionProvider", {})]
        with Engine(tiny_model_path, EngineOptions(providers=["openvino"])) as eng:
            assert eng.providers == ["CPUExecutionProvider"]
    msgs = [r.getMessage() for r in caplog.records if "OpenVINO" in r.getMessage()]
    assert len(msgs) == 1, msgs
    assert msgs[0].startswith("requested OpenVINO, not available here; running on CPU. ")
    assert "edgewise-tests-no-such-plugin is not installed" in msgs[0]
    assert "pip install 'edgewise[openvino]'" in msgs[0] and "onnxruntime-openvino" in msgs[0]
    with pytest.raises(ProviderUnavailableError, match=r"edgewise\[openvino\]"):
        resolve_providers(["openvino"], fallback=False)


def test_plugin_without_a_matching_device_falls_back(no_openvino, monkeypatch, caplog):
    # registered, but no OpenVINO device for the request (the plugin on an AMD host)
    monkeypatch.setattr(providers_mod, "_plugin_state", {"openvino": None})
    monkeypatch.setattr(providers_mod, "_plugin_providers", {OV})
    monkeypatch.setattr(providers_mod, "available_providers", lambda: [OV, "CPUExecutionProvider"])
    monkeypatch.setattr(providers_mod, "plugin_devices", lambda prov, opts=None: [])
    with caplog.at_level(logging.WARNING, logger="edgewise"):
        assert resolve_providers(["openvino"]) == [("CPUExecutionProvider", {})]
    assert "lists no CPU device" in caplog.text


def test_session_args_builtin_providers_by_name():
    import onnxruntime as ort

    so = ort.SessionOptions()
    got = providers_mod.session_args([("CPUExecutionProvider", {})], so)
    assert got == {"sess_options": so, "providers": ["CPUExecutionProvider"], "provider_options": [{}]}
