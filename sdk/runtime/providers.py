"""Execution-provider presets and the preference list with fallback to CPU.

Most providers come built into an onnxruntime package (``onnxruntime-gpu``, ...). Since
onnxruntime 1.23 a provider can also be a *plugin*: a package that ships the provider as a
shared library registered into the installed onnxruntime. The ``openvino`` preset uses the
OpenVINO plugin (``onnxruntime-ep-openvino``, extra ``openvino``) when that package is
installed and the provider is not built in; a plugin provider is added to a session by
device (:func:`session_args`), not by name.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

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
    # FP32: OpenVINO's CPU plugin otherwise computes in bf16 on CPUs with AMX / AVX512-BF16
    # (YOLOX-nano outputs then differ from the CPU EP's by up to 0.6, instead of 2e-5)
    "openvino": ("OpenVINO", "OpenVINOExecutionProvider", {"device_type": "CPU", "precision": "FP32"}),
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

#: what to install for a preset that is not available (the fallback message names it)
INSTALL_HINTS: dict[str, str] = {
    "openvino": ("`pip install 'edgewise[openvino]'` (the onnxruntime-ep-openvino plugin, for the installed "
                 "onnxruntime >= 1.23), or onnxruntime-openvino in an environment of its own (it replaces "
                 "the onnxruntime package)"),
}

# preset -> (plugin package's module, name it is registered under)
_PLUGINS: dict[str, tuple[str, str]] = {"openvino": ("onnxruntime_ep_openvino", "edgewise-openvino")}
_plugin_state: dict[str, str | None] = {}   # preset -> None (registered) or why it is unusable
_plugin_providers: set[str] = set()         # provider names that came from a plugin
_plugin_lock = threading.Lock()


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def register_plugin(preset: str) -> str | None:
    """Register the plugin package of ``preset`` into onnxruntime, once per process.

    Returns None when its provider is usable afterwards, otherwise why not (the package is not
    installed, this onnxruntime has no plugin API, the library failed to load). A provider
    built into the installed onnxruntime needs no plugin and is left alone.
    """
    import onnxruntime as ort

    if preset not in _PLUGINS:
        return f"no plugin package is known for {preset!r}"
    with _plugin_lock:
        if preset in _plugin_state:
            return _plugin_state[preset]
        module, reg_name = _PLUGINS[preset]
        why: str | None = None
        if PRESETS[preset] in available_providers():
            why = None  # built in (e.g. onnxruntime-openvino): nothing to register
        elif not hasattr(ort, "register_execution_provider_library"):
            why = f"onnxruntime {ort.__version__} has no plugin API (needs >= 1.23)"
        else:
            try:
                lib = importlib.import_module(module).get_library_path()
                ort.register_execution_provider_library(reg_name, lib)
                _plugin_providers.add(PRESETS[preset])
                logger.info("registered the %s plugin %s", display_name(PRESETS[preset]), lib)
            except ImportError:
                why = f"{module.replace('_', '-')} is not installed"
            except OSError as exc:  # the package is there but its library is not
                why = f"{module.replace('_', '-')} is broken ({exc})"
            except Exception as exc:  # onnxruntime's Fail: the library did not load
                if "already registered" in str(exc):
                    _plugin_providers.add(PRESETS[preset])
                else:
                    why = f"registering {module} failed: {str(exc).strip()[:300]}"
        _plugin_state[preset] = why
        return why


def plugin_devices(provider: str, options: Mapping[str, Any] | None = None) -> list[Any]:
    """The ``onnxruntime.OrtEpDevice`` entries of a plugin provider that match ``options``
    (OpenVINO: ``device_type``, default CPU, against the device's ``ov_device``)."""
    import onnxruntime as ort

    devices = [d for d in ort.get_ep_devices() if d.ep_name == provider]
    if provider == PRESETS["openvino"]:
        want = str((options or {}).get("device_type", "CPU")).upper()
        devices = [d for d in devices if str(d.ep_metadata.get("ov_device", "")).upper() == want]
    return devices


_OV_PRECISION = {"FP32": "f32", "FP16": "f16", "BF16": "bf16"}  # the EP's names -> OpenVINO's


def _plugin_options(provider: str, options: Mapping[str, Any]) -> dict[str, str]:
    """Preset options as a plugin takes them: strings; OpenVINO's device is chosen by device
    and its precision goes through ``load_config`` (the plugin ignores both keys)."""
    opts = dict(options)
    if provider == PRESETS["openvino"]:
        dev = str(opts.pop("device_type", "CPU")).upper()
        precision = opts.pop("precision", None)
        if precision and "load_config" not in opts:
            p = str(precision).upper()
            hint = ({"EXECUTION_MODE_HINT": "ACCURACY"} if p == "ACCURACY"
                    else {"INFERENCE_PRECISION_HINT": _OV_PRECISION.get(p, p.lower())})
            opts["load_config"] = json.dumps({dev: hint})
    return {k: v if isinstance(v, str) else json.dumps(v) if isinstance(v, dict) else str(v)
            for k, v in opts.items()}


def session_args(providers: Sequence[tuple[str, Mapping[str, Any]]], sess_options: Any) -> dict[str, Any]:
    """Keyword arguments for ``onnxruntime.InferenceSession`` that run ``providers`` (the
    output of :func:`resolve_providers`) with ``sess_options``.

    Built-in providers are passed by name. When a plugin provider is among them, every
    provider is added to ``sess_options`` by device instead (onnxruntime ignores
    ``providers=`` then); onnxruntime falls back to CPU for what the plugin cannot run, and a
    built-in accelerator listed beside a plugin is dropped with a warning.
    """
    if not any(p in _plugin_providers for p, _ in providers):
        return {"sess_options": sess_options, "providers": [p for p, _ in providers],
                "provider_options": [dict(o) for _, o in providers]}
    for prov, opts in providers:
        if prov == CPU:
            continue
        devices = plugin_devices(prov, opts) if prov in _plugin_providers else []
        if not devices:
            _warn_once(f"session:{prov}", "%s cannot be combined with a plugin provider in one session; "
                       "dropped", display_name(prov))
            continue
        sess_options.add_provider_for_devices(devices[:1], _plugin_options(prov, opts))
    return {"sess_options": sess_options}


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
    why_missing: dict[str, str] = {}
    for k in dict.fromkeys(keys):
        if k in _PLUGINS:
            why = register_plugin(k)
            if why is not None:
                why_missing[k] = why
    avail = available_providers()
    overrides = {(_to_key(k) if k.lower() != "auto" else k): dict(v) for k, v in (provider_options or {}).items()}
    chosen: list[tuple[str, dict[str, Any]]] = []
    missing: list[str] = []
    auto = {k for k in AUTO_ORDER} if any(n.lower() == "auto" for n in requested) else set()
    for k in keys:
        prov = PRESETS.get(k, k)
        if any(p == prov for p, _ in chosen):
            continue
        opts = preset_options(k) if k in _PRESET_TABLE else {}
        opts.update(overrides.get(k, {}))
        if prov in avail and prov in _plugin_providers and not plugin_devices(prov, opts):
            import onnxruntime as ort

            seen = sorted({str(d.ep_metadata.get("ov_device", d.device.type)) for d in ort.get_ep_devices()
                           if d.ep_name == prov})
            why_missing[k] = (f"its plugin is registered but lists no {opts.get('device_type', 'matching')} "
                              f"device here (devices: {seen or 'none'})")
            avail = [a for a in avail if a != prov]
        if prov in avail:
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
            f"but the available providers are {avail}; "
            + "".join(f"{a}; " for a in (_advice(m, why_missing) for m in missing) if a)
            + "install a build of onnxruntime with that provider (e.g. `pip install 'edgewise[gpu]'` for CUDA) "
              "or allow fallback")
    running_on = display_name(chosen[0][0])
    for m in missing:
        advice = _advice(m, why_missing)
        _warn_once(m, "requested %s, not available here; running on %s%s",
                   display_name(PRESETS.get(m, m)), running_on, f". {advice}" if advice else "")
    return chosen


def _advice(key: str, why_missing: Mapping[str, str]) -> str:
    """What to do about a missing preset: why it is missing (when known) and what to install."""
    name = display_name(PRESETS.get(key, key))
    hint = INSTALL_HINTS.get(key)
    why = why_missing.get(key)
    parts = [f"{name}: {why}" if why else "", f"to use {name}, install {hint}" if hint else ""]
    return "; ".join(p for p in parts if p)
