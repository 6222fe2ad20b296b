"""``benchmark_model``: one call that loads a model or bundle and measures everything."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sdk._log import logger
from sdk.bench.energy import EnergyMeter, EnergyReading
from sdk.bench.latency import measure_latency
from sdk.bench.memory import RssTracker
from sdk.bench.stats import model_stats
from sdk.errors import InferenceError, InputValidationError
from sdk.runtime import Engine, EngineOptions, LatencyStats, TensorSpec, discover_device

#: dynamic spatial dims of an image-like input (rank 4, NCHW or NHWC) default to this size
DEFAULT_IMAGE_SIDE = 640
#: a dynamic last dim (sequence length, samples) defaults to this size
DEFAULT_SEQ_LEN = 512


class BenchReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="model path, or 'bundle-name version' for a bundle")
    model_path: str
    providers: list[str]
    device: str = Field(description="one-line device summary")
    onnxruntime_version: str
    input_shapes: dict[str, list[int]]
    iters: int
    warmup: int
    threads: int | None = None
    latency: LatencyStats
    throughput_per_s: float
    peak_rss_bytes: int | None = Field(description="peak RSS while creating the session and running it")
    rss_delta_bytes: int | None = Field(None, description="peak RSS minus RSS before the session was created")
    size_bytes: int
    params: int
    flops: int | None
    energy: EnergyReading

    def table(self) -> str:
        """A short aligned table for people."""
        mib = 2 ** 20
        lat = self.latency
        rows = [
            ("model", self.model),
            ("providers", ", ".join(self.providers)),
            ("device", self.device),
            ("inputs", "; ".join(f"{k} {v}" for k, v in self.input_shapes.items())),
            ("iterations", f"{self.iters} (+{self.warmup} warm-up)"),
            ("latency p50", f"{lat.p50_ms:.3f} ms"),
            ("latency p90", f"{lat.p90_ms:.3f} ms"),
            ("latency p99", f"{lat.p99_ms:.3f} ms"),
            ("latency mean", f"{lat.mean_ms:.3f} ms (min {lat.min_ms:.3f}, max {lat.max_ms:.3f})"),
            ("throughput", f"{self.throughput_per_s:.1f} inferences/s"),
            ("peak RSS", "n/a" if self.peak_rss_bytes is None else f"{self.peak_rss_bytes / mib:.1f} MiB"
             + ("" if self.rss_delta_bytes is None else f" (+{self.rss_delta_bytes / mib:.1f} MiB for the model)")),
            ("model size", f"{self.size_bytes / mib:.2f} MiB"),
            ("parameters", f"{self.params:,}"),
            ("FLOPs", "n/a (shapes unknown)" if self.flops is None else _si(self.flops)),
            ("energy", str(self.energy)),
        ]
        w = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def _si(n: float) -> str:
    for suffix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3f} {suffix}"
    return f"{n:.0f}"


def default_shape(spec: TensorSpec, overrides: Mapping[str, Sequence[int]] | None = None) -> list[int]:
    """A concrete shape for an input: the override, else fixed dims kept, dim 0 -> 1, image
    spatial dims (rank 4) -> 640, a dynamic last dim (samples, tokens) -> 512, others -> 1."""
    if overrides and spec.name in overrides:
        return [int(v) for v in overrides[spec.name]]
    shape: list[int] = []
    channels_first = spec.rank == 4 and isinstance(spec.shape[1], int) and spec.shape[1] in (1, 3, 4)
    for i, d in enumerate(spec.shape):
        if isinstance(d, int):
            shape.append(d)
        elif i == 0:
            shape.append(1)
        elif spec.rank == 4 and ((channels_first and i in (2, 3)) or (not channels_first and i in (1, 2))):
            shape.append(DEFAULT_IMAGE_SIDE)
        elif i == spec.rank - 1:
            shape.append(DEFAULT_SEQ_LEN)
        else:
            shape.append(1)  # a dynamic dim between fixed ones is usually a batch (e.g. RNN state)
    return shape


def synthetic_feeds(inputs: Sequence[TensorSpec], shapes: Mapping[str, Sequence[int]] | None = None,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds matching the signature: floats uniform in [0, 1), ints and bools zero."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        shape = default_shape(spec, shapes)
        try:
            dt = np.dtype(spec.dtype)
        except TypeError:
            raise InputValidationError(f"cannot build a synthetic value for input {spec.name!r} of type "
                                       f"{spec.dtype}; pass feeds=...") from None
        feeds[spec.name] = rng.random(shape, dtype=np.float32).astype(dt) if dt.kind == "f" else np.zeros(shape, dt)
    return feeds


def _resolve(model: Any) -> tuple[Path, str]:
    """(ONNX path, display name) for a path, a bundle folder/.ewb or a loaded Bundle."""
    if hasattr(model, "model_path"):  # a Bundle, duck-typed
        m = getattr(model, "manifest", None)
        name = f"{m.name} {m.version}" if m is not None else str(getattr(model, "path", "bundle"))
        return Path(model.model_path("model")), name
    p = Path(model)
    if p.is_dir() or p.suffix == ".ewb":
        from sdk.bundle import load_bundle  # imported here: bundles are optional for bench

        return _resolve(load_bundle(p))
    if not p.exists():
        raise FileNotFoundError(f"model file not found: {p}")
    return p, str(p)


def benchmark_model(model: Any, options: EngineOptions | None = None, iters: int = 100,
                    warmup: int = 10, progress: bool = False,
                    input_shapes: Mapping[str, Sequence[int]] | None = None,
                    feeds: Mapping[str, np.ndarray] | None = None) -> BenchReport:
    """Benchmark an ONNX file or bundle: latency, throughput, memory, size, params, FLOPs, energy.

    Inputs are ``feeds`` if given, else synthetic arrays (see :func:`default_shape`; set
    ``input_shapes`` for dynamic dims, e.g. ``{"x": [1, 3, 960, 960]}``).
    """
    path, name = _resolve(model)
    opts = (options or EngineOptions()).model_copy(update={"warmup": 0})
    with RssTracker() as rss:
        with Engine(path, opts) as eng:
            x = dict(feeds) if feeds is not None else synthetic_feeds(eng.inputs, input_shapes)
            shapes = {k: list(np.shape(v)) for k, v in x.items()}
            try:
                eng.run_list(x)
            except InferenceError as exc:
                raise InferenceError(f"{exc}. The synthetic inputs were {shapes}; set input shapes "
                                     f"(--shape NAME=1,3,640,640) or pass real feeds") from exc
            arrays = [x[s.name] for s in eng.inputs]
            for _ in range(warmup):
                eng.run_list(arrays)
            with EnergyMeter() as meter:
                lat = measure_latency(lambda: eng.run_list(arrays), warmup=0, iters=iters,
                                      progress=progress, desc=path.name)
            providers = eng.providers
    stats = model_stats(path, shapes)
    dev = discover_device()
    logger.info("benchmarked %s: %s", name, lat)
    return BenchReport(
        model=name, model_path=str(path), providers=providers, device=dev.summary(),
        onnxruntime_version=dev.onnxruntime_version, input_shapes=shapes, iters=iters, warmup=warmup,
        threads=opts.session.intra_op_threads, latency=lat, throughput_per_s=lat.throughput_per_s,
        peak_rss_bytes=rss.peak_bytes, rss_delta_bytes=rss.delta_bytes, size_bytes=stats.size_bytes,
        params=stats.params, flops=stats.flops, energy=meter.reading(iters))

