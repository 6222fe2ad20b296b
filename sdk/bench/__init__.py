"""Measurements: latency percentiles, memory, model size/params/FLOPs, energy.

>>> from sdk.bench import benchmark_model
>>> print(benchmark_model("model.onnx", iters=100).table())  # doctest: +SKIP
"""
from sdk.bench.energy import ASSUMED_WATTS_PER_CORE, EnergyMeter, EnergyReading
from sdk.bench.latency import measure_latency
from sdk.bench.memory import RssTracker, current_rss_bytes, peak_memory_bytes
from sdk.bench.report import BenchReport, benchmark_model, default_shape, synthetic_feeds
from sdk.bench.stats import ModelStats, model_stats
from sdk.runtime.latency_stats import LatencyStats

__all__ = [
    "measure_latency", "LatencyStats",
    "benchmark_model", "BenchReport", "default_shape", "synthetic_feeds",
    "model_stats", "ModelStats",
    "EnergyMeter", "EnergyReading", "ASSUMED_WATTS_PER_CORE",
    "peak_memory_bytes", "current_rss_bytes", "RssTracker",
]
