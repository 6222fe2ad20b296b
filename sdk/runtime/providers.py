"""Execution-provider presets and the preference list with fallback to CPU."""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping

from sdk._log import logger
from sdk.errors import ProviderUnavailableError

CPU = "CPUExecutionProvider"


def _home() -> Path:
    return Path(os.environ.get("EDGEWISE_HOME") or Path.home() / ".cache" / "edgewise")


def _qnn_backend() -> str:
    return "QnnHtp.dll" if sys.platform == "win32" else "libQnnHtp.so"


# preset -> (display name, provider name, default options). Callables are resolved when used
# (the TensorRT cache directory depends on $EDGEWISE_HOME at that moment).
_PRESET_TABLE: dict[str, tuple[str, str, Any]] = {
    "cpu": ("CPU", CPU, {}),
    "cuda": ("CUDA", "CUDAExecutionProvider", {"device_id": 0, "arena_extend_strategy": "kSameAsRequested"}),
    "tensorrt": ("TensorRT", "TensorrtExecutionProvider",
                 lambda: {"device_id": 0, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
                          "trt_engine_cache_path": str(_home() / "trt_cache")}),
    "openvino": ("OpenVINO", "OpenVINOExecutionProvider", {"device_type": "CPU"}),
    "coreml": ("CoreML", "CoreMLExecutionProvider", {"ModelFormat": "MLProgram", "MLComputeUnits": "ALL"}),
    "nnapi": ("NNAPI", "NnapiExecutionProvider", {}),
    "qnn": ("QNN", "QNNExecutionProvider", lambda: {"backend_path": _qnn_backend(),
                                                    "htp_performance_mode": "burst"}),
    "directml": ("DirectML", "DmlExecutionProvider", {"device_id": 0}),
    "rocm": ("ROCm", "ROCMExecutionProvider", {"device_id": 0}),
    "migraphx": ("MIGraphX", "MIGraphXExecutionProvider", {"device_id": 0}),
    "xnnpack": ("XNNPACK", "XnnpackExecutionProvider", {}),
    "dnnl": ("oneDNN", "DnnlExecutionProvider", {}),
    "acl": ("ACL", "ACLExecutionProvider", {}),
    "azure": ("Azure", "AzureExecutionProvider", {}),
}

#: preset name -> onnxruntime provider name
PRESETS: dict[str, str] = {k: v[1] for k, v in _PRESET_TABLE.items()}

# "auto": the accelerators worth trying, best first. TensorRT (minutes of engine build on
# first run) and Azure (a remote endpoint) are only used when asked for by name.
AUTO_ORDER = ["cuda", "rocm", "migraphx", "directml", "coreml", "openvino", "qnn", "nnapi",
              "dnnl", "xnnpack", "cpu"]

_BY_PROVIDER = {v[1]: k for k, v in _PRESET_TABLE.items()}
_warned: set[str] = set()
_warned_lock = threading.Lock()


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def preset_options(preset: str) -> dict[str, Any]:
    """Default provider options of a preset (a fresh dict)."""
    opts = _PRESET_TABLE[preset][2]
    return dict(opts() if callable(opts) else opts)


def display_name(name: str) -> str:
    key = _BY_PROVIDER.get(name, name.lower())
    return _PRESET_TABLE[key][0] if key in _PRESET_TABLE else name


def _to_key(name: str) -> str:
    """Preset key for a preset or provider name; ValueError for an unknown one."""
    if name.lower() in _PRESET_TABLE or name.lower() == "auto":
        return name.lower()
    if name in _BY_PROVIDER:
        return _BY_PROVIDER[name]
    if name.endswith("ExecutionProvider"):
        return name  # a provider we have no preset for: pass it through
    raise ValueError(f"unknown provider {name!r}; use a preset ({', '.join(sorted(PRESETS))}, auto) "
                     f"or a full provider name such as 'CUDAExecutionProvider'")


def _warn_once(key: str, msg: str, *args: Any) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning(msg, *args)


def resolve_providers(requested: Iterable[str] | str = ("cpu",), fallback: bool = True,
                      provider_options: Mapping[str, Mapping[str, Any]] | None = None
                      ) -> list[tuple[str, dict[str, Any]]]:
    """Turn a preference list of presets/provider names into onnxruntime's provider list.

    Unavailable entries are dropped and each is logged once per process ("requested CUDA,
    not available here; running on CPU"); with ``fallback`` CPU is appended. Without
    ``fallback`` only what was listed is used, and when none of it is available
    :class:`ProviderUnavailableError` lists what this onnxruntime build offers (so
    ``["cuda"]`` fails on a CPU-only machine while ``["cuda", "cpu"]`` runs on CPU).
    ``"auto"`` expands to the accelerators worth trying (never TensorRT or Azure).
    ``provider_options`` overrides defaults, keyed by preset or provider name.
    """
    if isinstance(requested, str):
        requested = [p.strip() for p in requested.split(",") if p.strip()]
    keys: list[str] = []
    for name in requested:
        k = _to_key(name)
        keys.extend(AUTO_ORDER if k == "auto" else [k])
    if not keys:
        raise ValueError("no provider requested; pass e.g. ['cpu']")
    avail = available_providers()
    overrides = {(_to_key(k) if k.lower() != "auto" else k): dict(v) for k, v in (provider_options or {}).items()}
    chosen: list[tuple[str, dict[str, Any]]] = []
    missing: list[str] = []
    auto = {k for k in AUTO_ORDER} if any(n.lower() == "auto" for n in requested) else set()
    for k in keys:
        prov = PRESETS.get(k, k)
        if any(p == prov for p, _ in chosen):
            continue
        if prov in avail:
            opts = preset_options(k) if k in _PRESET_TABLE else {}
            opts.update(overrides.get(k, {}))
            if opts.get("trt_engine_cache_enable") and opts.get("trt_engine_cache_path"):
                Path(opts["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
            chosen.append((prov, opts))
        elif k not in auto or k in [n.lower() for n in requested]:
            missing.append(k)
    if fallback and not any(p == CPU for p, _ in chosen) and CPU in avail:
        chosen.append((CPU, overrides.get("cpu", {})))
    if not chosen:
        raise ProviderUnavailableError(
            f"requested {', '.join(display_name(PRESETS.get(m, m)) for m in missing)} "
            f"but the available providers are {avail}; install a build of onnxruntime with "
            f"that provider (e.g. `pip install 'edgewise[gpu]'` for CUDA) or allow fallback")
    running_on = display_name(chosen[0][0])
    for m in missing:
        _warn_once(m, "requested %s, not available here; running on %s",
                   display_name(PRESETS.get(m, m)), running_on)
    return chosen
