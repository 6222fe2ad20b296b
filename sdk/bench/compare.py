"""Comparing models' latency side by side: interleaved rounds, paired speedup intervals, CPU time.

On a shared 2-core machine a neighbour can slow one model's run by 30%; a verdict from one
long run of each model flips with the load. Here every model runs in every round, in a new
random order each round, and a speedup is the *paired* ratio of the baseline's round to the
candidate's same round, so a load change hits both sides of each ratio. The interval on the
median ratio (bootstrap over rounds) says whether a verdict is resolved: "1.6x (1.5-1.7)"
is, "1.1x (0.9-1.3)" is not. CPU time per run is kept next to wall time: a model that waits
on a busy core shows up as wall time the process did not spend.

>>> cmp = compare_latency({"fp32": "m.onnx", "int8": "m_int8.onnx"}, feeds, rounds=9)  # doctest: +SKIP
>>> cmp.speedup("fp32", "int8")          # (median, low, high) of the paired ratio  # doctest: +SKIP
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sdk.bench.latency import progress_bar

__all__ = ["LatencyComparison", "compare_latency", "speedup_interval", "fit_feeds"]


def fit_feeds(inputs: Sequence[Any], feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The baseline's feeds, cropped or zero-padded to each input's fixed dims, for timing a
    model whose input shape was changed (``fix_input_shape``)."""
    out = {}
    for spec in inputs:
        a = np.asarray(feeds[spec.name])
        want = [d if isinstance(d, int) and d > 0 else a.shape[k] for k, d in enumerate(spec.shape)]
        if list(a.shape) != want and len(want) == a.ndim:
            b = np.zeros(want, dtype=a.dtype)
            common = tuple(slice(0, min(x, y)) for x, y in zip(a.shape, want, strict=True))
            b[common] = a[common]
            a = b
        out[spec.name] = a
    return out


def speedup_interval(baseline: Sequence[float], candidate: Sequence[float], confidence: float = 0.9,
                     resamples: int = 2000) -> tuple[float, float, float]:
    """(median, low, high) of the paired per-round ratio baseline / candidate, with a bootstrap
    ``confidence`` interval over rounds (percentile method, seeded)."""
    b, c = np.asarray(baseline, float), np.asarray(candidate, float)
    if len(b) != len(c) or len(b) == 0:
        raise ValueError(f"need the same number (> 0) of rounds on both sides, got {len(b)} and {len(c)}")
    r = b / np.maximum(c, 1e-12)
    med = float(np.median(r))
    if len(r) < 3:
        return med, float(r.min()), float(r.max())
    rng = np.random.default_rng(0)
    boots = np.median(r[rng.integers(0, len(r), size=(resamples, len(r)))], axis=1)
    a = (1.0 - confidence) / 2
    return med, float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


@dataclass
class LatencyComparison:
    """Per model: the best wall time (ms) of each round, and the CPU time (ms) of that run."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]

    def median(self, name: str) -> float:
        """Latency (ms): the median over rounds of each round's best run."""
        return float(statistics.median(self.wall[name]))

    def cpu_median(self, name: str) -> float:
        return float(statistics.median(self.cpu[name]))

    def speedup(self, baseline: str, name: str, confidence: float = 0.9) -> tuple[float, float, float]:
        """(median, low, high): how many times faster ``name`` ran than ``baseline`` in the same rounds."""
        return speedup_interval(self.wall[baseline], self.wall[name], confidence)

    def win_rate(self, name: str, baseline: str) -> float:
        """Fraction of rounds in which ``name`` ran faster than ``baseline``."""
        return float(np.mean([x < y for x, y in zip(self.wall[name], self.wall[baseline], strict=True)]))

    def medians(self) -> dict[str, float]:
        return {n: self.median(n) for n in self.wall}


def compare_latency(models: Mapping[str, str | Path], feeds: Mapping[str, np.ndarray], target: str = "cpu",
                    rounds: int = 5, iters: int = 10, progress: bool = False, min_round_ms: float = 20.0,
                    sessions: int = 1) -> LatencyComparison:
    """Per model, the best latency (ms) of ``iters`` runs in each of ``rounds`` interleaved
    rounds, with the CPU time of the same run. The order of the models is shuffled every round
    (a fixed rotation keeps each model behind the same neighbour), and the best of a round is
    the run least disturbed by other processes (on a busy machine the median mostly measures
    the neighbours). A fast model runs more than ``iters`` times a round, enough to span
    ``min_round_ms``. ``feeds`` are fitted to each model's fixed input dims (:func:`fit_feeds`).

    ``sessions`` > 1 spreads the rounds over that many fresh sets of sessions: one
    onnxruntime session can run a few percent (sub-millisecond models: up to 20%) slower than
    another of the same file for its whole life (silero VAD, byte-identical copies side by
    side), so a single session pair can make a model look faster than itself."""
    from sdk.runtime import Engine, EngineOptions

    if rounds < 1 or iters < 1:
        raise ValueError(f"rounds and iters must be >= 1, got rounds={rounds}, iters={iters}")
    wall: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    rng = np.random.default_rng(0)
    sessions = max(1, min(int(sessions), rounds))
    with progress_bar(rounds * len(models), "latency", progress) as bar:
        for k in range(sessions):
            share = rounds // sessions + (1 if k < rounds % sessions else 0)
            engines: dict[str, Any] = {}
            try:
                for name, p in models.items():
                    engines[name] = Engine(p, EngineOptions(providers=[target], warmup=3))
                feeds_for = {name: fit_feeds(eng.inputs, feeds) for name, eng in engines.items()}
                n_iters = {name: _iters_per_round(eng, feeds_for[name], iters, min_round_ms)
                           for name, eng in engines.items()}
                names = list(engines)
                for _ in range(share):
                    for name in [names[i] for i in rng.permutation(len(names))]:
                        best, best_cpu = _best_run(engines[name], feeds_for[name], n_iters[name])
                        wall[name].append(best)
                        cpu[name].append(best_cpu)
                        bar.update(1)
            finally:
                for eng in engines.values():
                    eng.close()
    return LatencyComparison(wall, cpu)


def _iters_per_round(eng: Any, x: list[Any] | Mapping[str, Any], iters: int, min_round_ms: float) -> int:
    t0 = time.perf_counter()
    eng.run_list(x)
    once = max((time.perf_counter() - t0) * 1000, 1e-3)
    return max(iters, min(int(min_round_ms / once) + 1, 2000))


def _best_run(eng: Any, x: Any, n: int) -> tuple[float, float]:
    """(wall ms, CPU ms) of the fastest of ``n`` runs."""
    best, best_cpu = float("inf"), 0.0
    for _ in range(n):
        c0, t0 = time.process_time(), time.perf_counter()
        eng.run_list(x)
        dt, dc = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
        if dt < best:
            best, best_cpu = dt, dc
    return float(best), float(best_cpu)
