"""Measuring the candidates of a search on the target: latency, size, energy, and the
confirmation of a speed winner against the baseline alone.

Latency comes from :func:`sdk.bench.compare_latency`: every candidate and the baseline in
interleaved rounds, so load changes on a shared machine hit all alike, with the paired
per-round speedup and its 90% interval. The winner of that screen is re-measured alone
against the baseline (:func:`confirm`) before it is chosen.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from sdk.bench import compare_latency, energy_per_inference, model_file_size
from sdk.compress.options import OptimizeOptions
from sdk.compress.results import BASELINE, Candidate, choose

__all__ = ["measure_candidates", "confirm", "measured_on"]

logger = logging.getLogger("edgewise")


def measure_candidates(base: Candidate, ok: list[Candidate], feeds: Mapping[str, np.ndarray],
                       opts: OptimizeOptions) -> None:
    """Fill in latency, CPU time, win rate, speedup (paired median and interval), size and
    energy of the baseline and every built candidate."""
    lo = opts.latency
    everyone = [base] + ok
    paths: dict[str, Path] = {c.name: c.path for c in everyone if c.path is not None}
    paired: dict[str, float] = {}      # median of the per-round ratios, the figure the interval is about
    if lo.measure is not None:
        lat = dict(lo.measure(paths, feeds))
    else:
        tm = compare_latency(paths, feeds, opts.target, lo.rounds, lo.iters, opts.progress)
        lat = tm.medians()
        for c in everyone:
            c.cpu_ms = tm.cpu_median(c.name)
            c.win_rate = tm.win_rate(c.name, BASELINE)
            if c is not base:
                med, low, high = tm.speedup(BASELINE, c.name)
                c.speedup_ci = (low, high)
                paired[c.name] = med
    for c in everyone:
        assert c.path is not None
        c.latency_ms = float(lat[c.name])
        c.size_bytes = model_file_size(c.path)
        if lo.energy:
            c.energy = _energy(c.path, feeds, opts.target)
    assert base.latency_ms is not None and base.size_bytes is not None
    for c in everyone:
        c.speedup = paired.get(c.name, base.latency_ms / c.latency_ms if c.latency_ms else None)
        c.size_ratio = base.size_bytes / c.size_bytes if c.size_bytes else None


def _energy(path: Path, feeds: Mapping[str, np.ndarray], target: str) -> dict[str, object]:
    try:
        r = energy_per_inference(path, feeds, target)
        return {"joules_per_inference": r.joules_per_inference, "source": r.source, "note": r.note}
    except Exception as exc:  # noqa: BLE001 - energy is informative only
        return {"joules_per_inference": None, "source": "estimate", "note": f"not measured: {exc}"}


def confirm(base: Candidate, ok: list[Candidate], chosen: Candidate, note: str, feeds: Mapping[str, np.ndarray],
            target: str, rounds: int, iters: int, min_speedup: float, progress: bool,
            attempts: int = 3) -> tuple[Candidate, str]:
    """Re-measure a candidate chosen for speed against FP32 alone (the screen timed every
    candidate in one long interleaving, where a load change can still favour one); if it does
    not hold up, drop it and choose again, up to ``attempts`` candidates."""
    rejected: list[str] = []
    pool = list(ok)
    for _ in range(attempts):
        if chosen is base or (chosen.speedup or 0.0) < min_speedup:
            break                          # nothing claimed faster (FP32, or fp32_optimized as a fallback)
        assert base.path is not None and chosen.path is not None
        r = compare_latency({BASELINE: base.path, chosen.name: chosen.path}, feeds, target, rounds, iters,
                            progress, sessions=3)
        med, lo, hi = r.speedup(BASELINE, chosen.name)
        chosen.confirmed = {"speedup": med, "low": lo, "high": hi, "win_rate": r.win_rate(chosen.name, BASELINE)}
        if med >= min_speedup and lo > 1.0:
            note += (f" (confirmed alone against FP32: {med:.2f}x, 90% interval {lo:.2f}-{hi:.2f}x over "
                     f"{rounds} paired rounds)")
            break
        logger.info("%s did not hold up against FP32 alone (%.2fx, interval %.2f-%.2f); choosing again",
                    chosen.name, med, lo, hi)
        rejected.append(f"{chosen.name} ({med:.2f}x)")
        pool = [x for x in pool if x is not chosen]
        chosen, note = choose(base, pool, False, min_speedup)
    else:
        if chosen is not base and (chosen.speedup or 0.0) >= min_speedup:   # out of attempts
            chosen, note = base, (f"no candidate held up when re-measured alone against FP32 "
                                  f"({len(rejected)} tried); returning the FP32 model")
    if rejected:
        note += f"; not confirmed alone against FP32: {', '.join(rejected)}"
    return chosen, note


def measured_on(target: str) -> str:
    """'' when ``target`` runs here, else what the timings really ran on (a fallback to CPU)."""
    from sdk.runtime import resolve_providers
    from sdk.runtime.providers import PRESETS

    want = PRESETS.get(target.lower(), target)
    got = [p for p, _ in resolve_providers([target], fallback=True)]
    if want in got:
        return ""
    return f"target {target} ({want}) is not available in this onnxruntime; every latency was measured on {got[0]}"
