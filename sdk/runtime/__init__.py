"""The hardware backend: device discovery, execution providers, session options, Engine.

>>> from sdk.runtime import Engine, EngineOptions
>>> with Engine("model.onnx", EngineOptions(providers=["cuda", "cpu"])) as eng:  # doctest: +SKIP
...     out = eng.run({"images": x})
"""
from sdk.runtime.device import DeviceInfo, discover_device
from sdk.runtime.engine import Engine
from sdk.runtime.latency_stats import LatencyRecorder, LatencyStats
from sdk.runtime.options import EngineOptions, SessionOptions
from sdk.runtime.providers import PRESETS, available_providers, resolve_providers
from sdk.runtime.signature import TensorSpec, read_signature

__all__ = [
    "DeviceInfo", "discover_device",
    "PRESETS", "resolve_providers", "available_providers",
    "SessionOptions", "EngineOptions",
    "Engine", "TensorSpec", "read_signature",
    "LatencyStats", "LatencyRecorder",
]
