"""Timing candidates side by side: interleaved rounds, paired speedup intervals, CPU time.

On a shared 2-core machine a neighbour can slow one model's run by 30%; a verdict from one
long run of each model flips with the load. Here every model runs in every round, in a new
random order each round, and a speedup is the *paired* ratio of the baseline's round to the
candidate's same round, so a load change hits both sides of each ratio. The interval on the
median ratio (bootstrap over rounds) says whether a verdict is resolved: "1.6x (1.5-1.7)"
is, "1.1x (0.9-1.3)" is not. CPU time per run is kept next to wall time: a model that waits
on a busy core shows up as wall time the process did not spend.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sdk.compress.calibration import progress_enabled

__all__ = ["file_size", "fit_feeds", "Timing", "measure_latency_rounds", "measure_timings", "measure_latencies",
           "speedup_interval", "measure_energy"]


def file_size(path: Path) -> int:
    """Bytes of the model file plus any external-data files beside it that it names."""
    import onnx

    total = path.stat().st_size
    try:
        model = onnx.load(str(path), load_external_data=False)
        locs = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
        total += sum((path.parent / loc).stat().st_size for loc in locs if (path.parent / loc).is_file())
    except Exception:
        pass
    return total


def fit_feeds(inputs: Sequence[Any], feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The baseline's feeds, cropped or zero-padded to each input's fixed dims, for timing a
    candidate whose input shape was changed (``fix_input_shape``)."""
    out = {}
    for spec in inputs:
        a = np.asarray(feeds[spec.name])
        want = [d if isinstance(d, int) and d > 0 else a.shape[k] for k, d in enumerate(spec.shape)]
        if list(a.shape) != want and len(want) == a.ndim:
            b = np.zeros(want, dtype=a.dtype)
            common = tuple(slice(0, min(x, y)) for x, y in zip(a.shape, want))
            b[common] = a[common]
            a = b
        out[spec.name] = a
    return out


@dataclass
class Timing:
    """Per model: the best wall time (ms) of each round, and the CPU time (ms) of that run."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]

    def median(self, name: str) -> float:
        return float(statistics.median(self.wall[name]))

    def cpu_median(self, name: str) -> float:
        return float(statistics.median(self.cpu[name]))


def measure_timings(paths: Mapping[str, Path], feeds: Mapping[str, np.ndarray], target: str = "cpu",
                    rounds: int = 5, iters: int = 10, progress: bool = False, min_round_ms: float = 20.0,
                    sessions: int = 1) -> Timing:
    """Per model, the best latency (ms) of ``iters`` runs in each of ``rounds`` interleaved
    rounds, with the CPU time of the same run. The order of the models is shuffled every round
    (a fixed rotation keeps each model behind the same neighbour), and the best of a round is
    the run least disturbed by other processes (on a busy machine the median mostly measures
    the neighbours). A fast model runs more than ``iters`` times a round, enough to span
    ``min_round_ms``.

    ``sessions`` > 1 spreads the rounds over that many fresh sets of sessions: one
    onnxruntime session can run a few percent (sub-millisecond models: up to 20%) slower than
    another of the same file for its whole life (silero VAD, byte-identical copies side by
    side), so a single session pair can make a model look faster than itself."""
    from tqdm.auto import tqdm

    from sdk.runtime import Engine, EngineOptions

    wall: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    rng = np.random.default_rng(0)
    bar = tqdm(total=rounds * len(paths), desc="latency", unit="model", disable=not progress_enabled(progress))
    sessions = max(1, min(int(sessions), rounds))
    for k in range(sessions):
        share = rounds // sessions + (1 if k < rounds % sessions else 0)
        engines: dict[str, Any] = {}
        try:
            for name, p in paths.items():
                engines[name] = Engine(p, EngineOptions(providers=[target], warmup=3))
            feeds_for = {name: fit_feeds(eng.inputs, feeds) for name, eng in engines.items()}
            n_iters = {}
            for name, eng in engines.items():
                t0 = time.perf_counter()
                eng.run_list(feeds_for[name])
                once = max((time.perf_counter() - t0) * 1000, 1e-3)
                n_iters[name] = max(iters, min(int(min_round_ms / once) + 1, 2000))
            names = list(engines)
            for _ in range(share):
                for name in [names[i] for i in rng.permutation(len(names))]:
                    eng, x = engines[name], feeds_for[name]
                    best, best_cpu = float("inf"), 0.0
                    for _ in range(n_iters[name]):
                        c0, t0 = time.process_time(), time.perf_counter()
                        eng.run_list(x)
                        dt, dc = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
                        if dt < best:
                            best, best_cpu = dt, dc
                    wall[name].append(float(best))
                    cpu[name].append(float(best_cpu))
                    bar.update(1)
        finally:
            for eng in engines.values():
                eng.close()
    bar.close()
    return Timing(wall, cpu)


def measure_latency_rounds(paths: Mapping[str, Path], feeds: Mapping[str, np.ndarray], target: str = "cpu",
                           rounds: int = 5, iters: int = 10, progress: bool = False,
                           min_round_ms: float = 20.0, sessions: int = 1) -> dict[str, list[float]]:
    """The wall times of :func:`measure_timings` alone."""
    return measure_timings(paths, feeds, target, rounds, iters, progress, min_round_ms, sessions).wall


def measure_latencies(paths: Mapping[str, Path], feeds: Mapping[str, np.ndarray], target: str = "cpu",
                      rounds: int = 5, iters: int = 10, progress: bool = False, sessions: int = 1) -> dict[str, float]:
    """Latency (ms) per model: the median over interleaved rounds of each round's best run."""
    res = measure_latency_rounds(paths, feeds, target, rounds, iters, progress, sessions=sessions)
    return {n: float(statistics.median(v)) for n, v in res.items()}


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


def measure_energy(path: Path, feeds: Mapping[str, np.ndarray], target: str = "cpu", n: int = 10) -> dict[str, Any]:
    """Energy per inference over ``n`` runs: RAPL where readable, otherwise a labelled estimate."""
    from sdk.bench import EnergyMeter
    from sdk.runtime import Engine, EngineOptions

    with Engine(path, EngineOptions(providers=[target], warmup=1)) as eng:
        x = fit_feeds(eng.inputs, feeds)
        with EnergyMeter() as meter:
            for _ in range(n):
                eng.run_list(x)
    r = meter.reading(n)
    return {"joules_per_inference": r.joules_per_inference, "source": r.source, "note": r.note}
