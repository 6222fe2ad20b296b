"""Device discovery and provider resolution."""
from __future__ import annotations

import json
import logging

import numpy as np
import onnxruntime as ort
import pytest

from sdk.errors import ProviderUnavailableError
from sdk.runtime import (
    PRESETS,
    DeviceInfo,
    Engine,
    EngineOptions,
    device as device_mod,
    discover_device,
    providers as providers_mod,
    resolve_providers,
)

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t: 0
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8 avx_vnni

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t: 0
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8 avx_vnni

processor\t: 2
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t: 1
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8 avx_vnni
"""

ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 48.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 asimddp i8mm sve

processor\t: 1
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 asimddp i8mm sve
"""


def test_discover_device_sane():
    info = discover_device()
    assert info.logical_cores is None or info.logical_cores >= 1
    if info.physical_cores and info.logical_cores:
        assert info.physical_cores <= info.logical_cores
    if info.memory_total_bytes is not None:
        assert info.memory_total_bytes > 2**26
        assert info.memory_available_bytes is None or info.memory_available_bytes <= info.memory_total_bytes
    assert info.onnxruntime_version == ort.__version__
    assert "CPUExecutionProvider" in info.available_providers
    assert all(isinstance(v, bool) for v in info.isa.values())
    again = DeviceInfo.model_validate(json.loads(info.model_dump_json()))
    assert again == info
    assert info.summary()


def test_parse_x86_cpuinfo():
    model, phys, flags = device_mod._parse_cpuinfo(X86_CPUINFO)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert phys == 2  # three logical CPUs on two cores
    isa = device_mod._isa("x86_64", flags)
    assert isa["avx512_vnni"] and isa["amx_int8"] and isa["amx"] and isa["avx_vnni"]
    assert not isa["amx_bf16"] and not isa["avx512bw"]


def test_parse_arm_cpuinfo():
    model, phys, flags = device_mod._parse_cpuinfo(ARM_CPUINFO)
    isa = device_mod._isa("aarch64", flags)
    assert isa == {**isa, "neon": True, "dotprod": True, "i8mm": True, "sve": True, "sve2": False}


def test_discover_without_proc(monkeypatch):
    """macOS/Windows have no /proc: fields become None, nothing crashes."""
    monkeypatch.setattr(device_mod, "_read", lambda path: None)
    info = discover_device()
    assert info.logical_cores and info.available_providers


def test_presets_cover_the_documented_names():
    for name in ["cpu", "cuda", "tensorrt", "openvino", "coreml", "nnapi", "qnn", "directml", "rocm",
                 "migraphx", "xnnpack", "dnnl", "acl", "azure"]:
        assert PRESETS[name].endswith("ExecutionProvider")


def test_fallback_logged_once(caplog, monkeypatch):
    monkeypatch.setattr(providers_mod, "_warned", set())
    monkeypatch.setattr(providers_mod, "available_providers", lambda: ["CPUExecutionProvider"])
    with caplog.at_level(logging.WARNING, logger="edgewise"):
        for _ in range(3):
            assert resolve_providers(["cuda", "cpu"]) == [("CPUExecutionProvider", {})]
        resolve_providers(["CUDAExecutionProvider"])  # the full name counts as the same request
    msgs = [r.getMessage() for r in caplog.records if "not available" in r.getMessage()]
    assert msgs == ["requested CUDA, not available here; running on CPU"]


def test_fallback_disabled_lists_available(monkeypatch):
    monkeypatch.setattr(providers_mod, "available_providers",
                        lambda: ["AzureExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(ProviderUnavailableError) as exc:
        resolve_providers(["tensorrt"], fallback=False)
    assert "TensorRT" in str(exc.value)
    assert "['AzureExecutionProvider', 'CPUExecutionProvider']" in str(exc.value)
    # an explicit CPU entry in the list is the caller's own fallback
    assert resolve_providers(["tensorrt", "cpu"], fallback=False) == [("CPUExecutionProvider", {})]


def test_engine_with_unavailable_provider(tiny_model_path, monkeypatch):
    monkeypatch.setattr(providers_mod, "available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ProviderUnavailableError):
        Engine(tiny_model_path, EngineOptions(providers=["coreml"], fallback=False))
    with Engine(tiny_model_path, EngineOptions(providers=["coreml"])) as eng:
        assert eng.providers == ["CPUExecutionProvider"]
        assert eng.run(np.zeros((1, 4), np.float32))["y"].shape == (1, 4)


def test_resolve_options_and_order(monkeypatch):
    monkeypatch.setattr(providers_mod, "available_providers",
                        lambda: ["CUDAExecutionProvider", "AzureExecutionProvider", "CPUExecutionProvider"])
    got = resolve_providers(["cuda", "cpu"], provider_options={"cuda": {"device_id": 1}})
    assert [p for p, _ in got] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert got[0][1]["device_id"] == 1
    auto = [p for p, _ in resolve_providers(["auto"])]
    assert auto == ["CUDAExecutionProvider", "CPUExecutionProvider"]  # Azure is never chosen implicitly
    assert [p for p, _ in resolve_providers(["azure"])][0] == "AzureExecutionProvider"
    with pytest.raises(ValueError, match="unknown provider 'tpu'"):
        resolve_providers(["tpu"])
