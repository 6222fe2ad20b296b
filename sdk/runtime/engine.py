"""The :class:`Engine`: one onnxruntime session, validated calls, latency recorded."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence, cast

import numpy as np

from sdk._log import logger
from sdk.closing import Closing
from sdk.errors import InferenceError, InputValidationError, ModelLoadError
from sdk.runtime.latency_stats import LatencyRecorder, LatencyStats
from sdk.runtime.options import EngineOptions
from sdk.runtime.providers import resolve_providers, session_args
from sdk.runtime.signature import InputValidator, TensorSpec, check_finite_inputs

_perf_ns = time.perf_counter_ns


def _clean_ort_message(exc: BaseException) -> str:
    msg = str(exc).strip()
    # "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from x failed:..." -> the useful tail
    if msg.startswith("[ONNXRuntimeError]"):
        parts = msg.split(" : ", 3)
        msg = parts[-1] if len(parts) == 4 else msg
    return msg


def _source(model: Any) -> tuple[Any, Path | None, str]:
    """(what onnxruntime loads, the file path or None, a label for messages)."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.exists():
            raise FileNotFoundError(f"model file not found: {path}")
        if path.is_dir():
            raise ModelLoadError(f"{path} is a directory, not an ONNX file; for a bundle use "
                                 f"sdk.bundle.load_bundle(path).engine()")
        if path.stat().st_size == 0:
            raise ModelLoadError(f"cannot load ONNX model {path}: the file is empty")
        return str(path), path, str(path)
    if isinstance(model, (bytes, bytearray, memoryview)):
        if len(model) == 0:
            raise ModelLoadError("cannot load ONNX model from bytes: no bytes given")
        return bytes(model), None, f"<{len(model)} bytes>"
    import onnx  # a runtime dependency

    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString(), None, f"<ModelProto {model.graph.name or 'graph'}>"
    raise TypeError(f"model must be a path, bytes or onnx.ModelProto, got {type(model).__name__}")


def _zero_feed(spec: TensorSpec) -> np.ndarray | None:
    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    if spec.dtype == "str":
        return np.full(shape, "", dtype=object)
    try:
        return np.zeros(shape, dtype=np.dtype(spec.dtype))
    except TypeError:
        return None


_INT8_WARNED: set[str] = set()


def _int8_check(src: Any, label: str) -> str | None:
    """:func:`sdk.runtime.int8_weights.saturation_warning` for what the session loaded, logged;
    the model is parsed only on CPUs where 8-bit weights can overflow and only when its bytes
    name an integer kernel."""
    from sdk.runtime.device import discover_device
    from sdk.runtime.isa import isa_profile, needs_reduce_range

    device = discover_device()
    if not needs_reduce_range(isa_profile(device)):
        return None
    import onnx

    from sdk.runtime.int8_weights import MAY_HOLD_INT8_WEIGHTS, saturation_warning

    try:
        data = src if isinstance(src, bytes) else Path(src).read_bytes()
        if not any(k in data for k in MAY_HOLD_INT8_WEIGHTS):
            return None
        why = saturation_warning(onnx.load_from_string(data), device)
    except Exception as exc:  # noqa: BLE001 - onnxruntime loaded it: a check that cannot parse never blocks
        logger.debug("INT8 weight check skipped for %s: %s", label, exc)
        return None
    if why and label not in _INT8_WARNED:   # once per model per process: a pool of engines logs it once
        _INT8_WARNED.add(label)
        logger.warning("%s: %s", label, why)
    return why


class Engine(Closing):
    """Owns one onnxruntime session and runs it with validated inputs.

    ``model`` is a path, the bytes of an ONNX file or an ``onnx.ModelProto``. A model that
    cannot be read raises :class:`~sdk.errors.ModelLoadError` naming the file; a missing
    file raises ``FileNotFoundError``. Every call's latency (the onnxruntime call itself)
    goes into a fixed-size ring (:attr:`latency`). Use ``with Engine(...) as eng:`` or call
    :meth:`close`.

    ``run`` may be called from several threads (onnxruntime sessions are thread-safe); the
    latency ring is not locked, so concurrent calls may, rarely, overwrite a sample.
    Keyword ``overrides`` update ``options``: ``Engine(path, warmup=0)``.

    With ``SessionOptions(optimized_model_path=...)`` the first engine saves onnxruntime's
    optimized graph there; later engines load that file (optimization off) while it is newer
    than the model. The saved graph is specific to this machine and provider list.

    On the CPU provider, a model whose INT8 weights can overflow onnxruntime's int16 sums on
    this CPU (8-bit weights without VNNI: :mod:`sdk.runtime.int8_weights`) loads with a
    logged warning, also kept in :attr:`int8_warning` (None when the model is safe here).
    """

    def __init__(self, model: Any, options: EngineOptions | None = None, *, label: str | None = None,
                 **overrides: Any):
        import onnxruntime as ort

        opts = options or EngineOptions()
        if overrides:
            opts = EngineOptions.model_validate({**opts.model_dump(), **overrides})
        self.options = opts
        src, self.model_path, self._label = _source(model)
        if label:  # e.g. the bundle file the verified bytes came from
            self._label = label
        providers = resolve_providers(opts.providers, fallback=opts.fallback,
                                      provider_options=opts.provider_options)
        so_cfg = opts.session
        load_optimized = False
        opt_path = so_cfg.optimized_model_path
        if opt_path is not None and self.model_path is not None and Path(opt_path).is_file() \
                and Path(opt_path).stat().st_mtime >= self.model_path.stat().st_mtime:
            src, load_optimized = str(opt_path), True
            logger.info("loading the saved optimized graph %s (fast start)", opt_path)
        self._sess = None
        if load_optimized:
            try:
                self._sess = ort.InferenceSession(src, **session_args(providers, so_cfg.to_ort(load_optimized=True)))
            except Exception as exc:  # a stale or damaged saved graph: rebuild it from the model
                logger.warning("saved optimized graph %s is unusable (%s); loading %s instead",
                               opt_path, _clean_ort_message(exc), self._label)
                src = str(self.model_path)
        if self._sess is None:
            try:
                self._sess = ort.InferenceSession(src, **session_args(providers, so_cfg.to_ort()))
            except Exception as exc:  # onnxruntime raises several pybind exception types
                raise ModelLoadError(f"cannot load ONNX model {self._label}: {_clean_ort_message(exc)}") from exc
        dropped = [p for p, _ in providers if p not in self._sess.get_providers()]
        if dropped:  # onnxruntime logs the reason and goes on without the provider
            logger.warning("onnxruntime could not start %s for %s (its log says why); running on %s",
                           ", ".join(dropped), self._label, ", ".join(self._sess.get_providers()))
        self.int8_warning: str | None = None
        if self._sess.get_providers()[0] == "CPUExecutionProvider":
            self.int8_warning = _int8_check(src, self._label)
        self.inputs: list[TensorSpec] = [TensorSpec.from_ort(a) for a in self._sess.get_inputs()]
        self.outputs: list[TensorSpec] = [TensorSpec.from_ort(a) for a in self._sess.get_outputs()]
        self._validator = InputValidator(self.inputs)
        self._input_names = self._validator.names
        self._output_names = [o.name for o in self.outputs]
        self._single = self._input_names[0] if len(self._input_names) == 1 else None
        self._check_finite = opts.check_finite
        self._lat = LatencyRecorder(opts.latency_window)
        self._run = self._sess.run
        if opts.warmup:
            self._warmup(opts.warmup)

    # -- properties -------------------------------------------------------------------
    @property
    def providers(self) -> list[str]:
        """Providers the session actually uses, in priority order."""
        return list(self._live().get_providers())

    @property
    def latency(self) -> LatencyStats:
        return self._lat.stats()

    @property
    def session(self) -> Any:
        """The underlying ``onnxruntime.InferenceSession`` (for what the Engine does not wrap)."""
        return self._live()

    @property
    def closed(self) -> bool:
        return self._sess is None

    def reset_latency(self) -> None:
        self._lat.reset()

    # -- running ----------------------------------------------------------------------
    def run(self, feeds: Mapping[str, Any] | np.ndarray, output_names: Sequence[str] | None = None
            ) -> dict[str, np.ndarray]:
        """Run once. ``feeds`` maps input names to arrays; a single-input model also takes a
        bare array. Returns ``{output name: array}``."""
        names = list(output_names) if output_names is not None else self._output_names
        return dict(zip(names, self.run_list(feeds, output_names), strict=True))

    def run_list(self, feeds: Mapping[str, Any] | Sequence[Any] | np.ndarray,
                 output_names: Sequence[str] | None = None) -> list[np.ndarray]:
        """Run once and return the outputs as a list (the lowest-overhead path).

        ``feeds``: a dict by name, a list/tuple of arrays in input order, or a bare array
        for a single-input model.
        """
        if self._run is None:
            raise InferenceError("this Engine is closed")
        kind = type(feeds)  # exact-type checks first: the cheapest dispatch on the hot path
        if kind is dict:
            checked = self._validator.validate(cast(dict, feeds))
        elif kind is list or kind is tuple:
            checked = self._validator.validate_list(cast(Sequence, feeds))
        elif kind is np.ndarray or isinstance(feeds, np.ndarray):
            if self._single is None:
                raise InputValidationError(
                    f"a bare array was given but the model has {len(self._input_names)} inputs "
                    f"{self._input_names}; pass a dict by name")
            checked = {self._single: self._validator.checks[0].check(feeds)}
        elif isinstance(feeds, (list, tuple)):
            checked = self._validator.validate_list(feeds)
        elif isinstance(feeds, Mapping):  # last: an ABC check is slow when it fails
            checked = self._validator.validate(feeds)
        else:
            raise InputValidationError(
                f"feeds must be a dict of arrays by input name {self._input_names}, a list of "
                f"arrays or a numpy array, got {type(feeds).__name__}")
        if self._check_finite:
            check_finite_inputs(checked)
        t0 = _perf_ns()
        try:
            outs = self._run(output_names or self._output_names, checked)
        except Exception as exc:
            raise InferenceError(f"onnxruntime failed running {self._label}: {_clean_ort_message(exc)}") from exc
        self._lat.record_ns(_perf_ns() - t0)
        if self._check_finite:
            self._check_outputs(outs, output_names or self._output_names)
        return outs

    __call__ = run

    def _check_outputs(self, outs: Sequence[Any], names: Sequence[str]) -> None:
        for name, y in zip(names, outs, strict=True):
            if isinstance(y, np.ndarray) and y.dtype.kind in "fc" and not np.isfinite(y).all():
                bad = int(y.size - np.count_nonzero(np.isfinite(y)))
                raise InferenceError(f"output '{name}' of {self._label} has {bad} NaN/Inf value(s) "
                                     f"of {y.size}; check the inputs' range and the model")

    def _warmup(self, n: int) -> None:
        feeds = {}
        for spec in self.inputs:
            z = _zero_feed(spec)
            if z is None:
                logger.info("warm-up skipped for %s: input %r has type %s", self._label, spec.name, spec.dtype)
                return
            feeds[spec.name] = z
        import onnxruntime as ort

        quiet = ort.RunOptions()
        quiet.log_severity_level = 4  # a failed warm-up is expected for some models; say it once, below
        try:
            for _ in range(n):
                self._run(self._output_names, feeds, quiet)
        except Exception as exc:
            dynamic = any(s.is_dynamic for s in self.inputs)
            logger.log(20 if dynamic else 30,
                       "warm-up skipped for %s: it does not run on zero inputs%s (%s)", self._label,
                       " with dynamic dims set to 1" if dynamic else "", _clean_ort_message(exc))

    # -- lifetime ---------------------------------------------------------------------
    def _live(self) -> Any:
        if self._sess is None:
            raise InferenceError("this Engine is closed")
        return self._sess

    def close(self) -> None:
        """Release the session. Further calls raise InferenceError; closing twice is fine."""
        self._sess = None
        self._run = None

    def __repr__(self) -> str:
        state = "closed" if self._sess is None else ",".join(self.providers)
        return (f"Engine({self._label}, inputs={[str(s) for s in self.inputs]}, "
                f"outputs={[str(s) for s in self.outputs]}, {state})")
