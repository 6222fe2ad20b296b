"""What a search produces and how it chooses: candidates, the result, the selection rule
and the Pareto set.

The rule: keep the Pareto set (metric up, latency down, size down) and choose the fastest
candidate within the budget that is at least ``min_speedup`` times faster than the baseline
(and whose paired-speedup interval lies above 1.0), or, with ``size_only``, the smallest one
within the budget. When no candidate beats the baseline, say so and return the FP32 model
(or its graph-optimized copy when that is no slower).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sdk.compress.budget import Budget
from sdk.compress.recipe import Recipe

__all__ = ["BASELINE", "Candidate", "OptimizeResult", "choose", "pareto_front"]

#: the name of the input model among the candidates
BASELINE = "fp32"


@dataclass
class Candidate:
    name: str
    recipe: Recipe | None
    path: Path | None = None
    metric: float | None = None
    delta: float | None = None
    latency_ms: float | None = None
    speedup: float | None = None
    size_bytes: int | None = None
    size_ratio: float | None = None
    energy: dict[str, Any] | None = None
    within_budget: bool = False
    pareto: bool = False
    chosen: bool = False
    error: str | None = None
    build_s: float = 0.0
    win_rate: float | None = None  # fraction of interleaved rounds faster than the baseline's same round
    confirmed: dict[str, float] | None = None  # {"speedup", "win_rate"} of a re-measurement against FP32 alone
    search_metric: float | None = None   # on the search data, when a held-out evaluator judges `metric`
    speedup_ci: tuple[float, float] | None = None   # 90% interval of the paired per-round speedup
    cpu_ms: float | None = None          # CPU time of the best run per round (median), next to wall time
    report: dict[str, Any] | None = None  # what the recipe's passes reported

    @property
    def ok(self) -> bool:
        return self.error is None and self.path is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "recipe": self.recipe.to_list() if self.recipe is not None else [],
            "recipe_text": self.recipe.describe() if self.recipe is not None else "(input model)",
            "path": str(self.path) if self.path else None, "metric": self.metric, "delta": self.delta,
            "latency_ms": self.latency_ms, "speedup": self.speedup, "size_bytes": self.size_bytes,
            "size_ratio": self.size_ratio, "energy": self.energy, "within_budget": self.within_budget,
            "pareto": self.pareto, "chosen": self.chosen, "error": self.error, "build_s": round(self.build_s, 2),
            "win_rate": self.win_rate, "confirmed": self.confirmed, "search_metric": self.search_metric,
            "speedup_ci": list(self.speedup_ci) if self.speedup_ci else None, "cpu_ms": self.cpu_ms,
            "report": self.report,
        }


@dataclass
class OptimizeResult:
    baseline: Candidate
    candidates: list[Candidate]
    chosen: Candidate
    pareto: list[Candidate]
    note: str
    metric_name: str
    budget: Budget
    allowed_drop: float
    size_only: bool
    target: str
    model: Path
    sensitivity: dict[str, Any] | None = None
    device: dict[str, Any] = field(default_factory=dict)
    bit_allocation: dict[str, Any] | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)
    isa_profile: str = ""
    evaluation: dict[str, Any] = field(default_factory=dict)   # what the search and held-out data hold

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model), "target": self.target, "metric": self.metric_name,
            "budget": {"max_drop": self.budget.value, "relative": self.budget.relative,
                       "allowed_drop": self.allowed_drop, "text": str(self.budget)},
            "size_only": self.size_only, "note": self.note, "chosen": self.chosen.name,
            "baseline": self.baseline.name, "pareto": [c.name for c in self.pareto],
            "candidates": [c.to_dict() for c in self.candidates], "sensitivity": self.sensitivity,
            "device": self.device, "bit_allocation": self.bit_allocation, "skipped": self.skipped,
            "isa_profile": self.isa_profile, "evaluation": self.evaluation,
        }


def _resolved(c: Candidate) -> bool:
    """Faster beyond the noise: the 90% interval of the paired speedup lies above 1.0 (or,
    timed without rounds, nothing says otherwise)."""
    if c.speedup_ci is not None:
        return c.speedup_ci[0] > 1.0
    return c.win_rate is None or c.win_rate >= 0.8


def choose(base: Candidate, ok: list[Candidate], size_only: bool, min_speedup: float) -> tuple[Candidate, str]:
    """The selection rule (see the module docstring); returns (chosen, note)."""
    fits = [c for c in ok if c.within_budget]
    if size_only:
        smaller = [c for c in fits if c.size_bytes is not None and base.size_bytes is not None
                   and c.size_bytes < base.size_bytes]
        if smaller:
            best = min(smaller, key=lambda c: (c.size_bytes, c.latency_ms))
            return best, (f"size-only: chose {best.name}, {best.size_ratio:.2f}x smaller, metric delta "
                          f"{best.delta:+.4f}, {best.speedup:.2f}x the baseline speed")
        return base, "size-only: no candidate within the budget is smaller than the FP32 input; returning it"
    faster = [c for c in fits if c is not base and c.speedup is not None and c.speedup >= min_speedup
              and _resolved(c)]
    if faster:
        best = max(faster, key=lambda c: (c.speedup, c.metric))
        return best, (f"chose {best.name}: {best.speedup:.2f}x faster than FP32, metric delta {best.delta:+.4f}, "
                      f"{best.size_ratio:.2f}x smaller")
    opt = next((c for c in fits if c.name == "fp32_optimized" and c.latency_ms is not None
                and base.latency_ms is not None and c.latency_ms <= base.latency_ms), None)
    tried = len(ok)
    msg = (f"no candidate within the budget is at least {min_speedup:.2f}x faster than FP32 on this hardware "
           f"({tried} tried); returning the FP32 model")
    if opt is not None:
        return opt, msg + " (graph-optimized, same accuracy, faster start)"
    return base, msg


def pareto_front(cands: Iterable[Candidate]) -> list[Candidate]:
    """Candidates not dominated on (metric higher, latency lower, size lower)."""
    scored = [(c, (c.metric, c.latency_ms, c.size_bytes or 0)) for c in cands
              if c.metric is not None and c.latency_ms is not None]
    front = []
    for c, (m, lat, size) in scored:
        dominated = any(
            o is not c and om >= m and ol <= lat and osz <= size and (om > m or ol < lat or osz < size)
            for o, (om, ol, osz) in scored)
        if not dominated:
            front.append((lat, c))
    return [c for _, c in sorted(front, key=lambda x: x[0])]
