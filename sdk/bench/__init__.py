"""Measurements: latency percentiles, interleaved latency comparisons, memory, model
size/params/FLOPs, energy.

>>> from sdk.bench import benchmark_model, compare_latency
>>> print(benchmark_model("model.onnx", iters=100).table())  # doctest: +SKIP
>>> compare_latency({"fp32": "m.onnx", "int8": "q.onnx"}, feeds).speedup("fp32", "int8")  # doctest: +SKIP
"""
from sdk.bench.compare import LatencyComparison, compare_latency, fit_feeds, speedup_interval
from sdk.bench.energy import ASSUMED_WATTS_PER_CORE, EnergyMeter, EnergyReading, energy_per_inference
from sdk.bench.latency import measure_latency
from sdk.bench.memory import RssTracker, current_rss_bytes, peak_memory_bytes
from sdk.bench.report import BenchReport, benchmark_model, default_shape, synthetic_feeds
from sdk.bench.stats import ModelStats, model_file_size, model_stats
from sdk.runtime.latency_stats import LatencyStats

__all__ = [
    "measure_latency", "LatencyStats",
    "compare_latency", "LatencyComparison", "speedup_interval", "fit_feeds",
    "benchmark_model", "BenchReport", "default_shape", "synthetic_feeds",
    "model_stats", "ModelStats", "model_file_size",
    "EnergyMeter", "EnergyReading", "ASSUMED_WATTS_PER_CORE", "energy_per_inference",
    "peak_memory_bytes", "current_rss_bytes", "RssTracker",
]
