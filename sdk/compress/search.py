"""Accuracy-budgeted search: try candidate recipes, measure, choose.

``optimize(model, calib, evaluator, max_drop=0.01, ...)``:

1. evaluates the input model (the FP32 baseline) with ``evaluator`` (higher is better);
2. builds candidate recipes (graph-optimized FP32, dynamic INT8, static INT8 QDQ / QOperator,
   per-tensor / per-channel, U8S8 / U8U8, with nodes kept in float by a sensitivity
   analysis, FP16 and weight-only INT4 for size, plus any recipes passed in), applies each
   (a failure is recorded on the candidate, never fatal);
3. measures latency on the target with :class:`sdk.runtime.Engine` in interleaved rounds
   together with the baseline (so load changes on a shared machine hit all alike), the file
   size, the metric and the energy per inference (RAPL or a labelled estimate);
4. keeps the Pareto set (metric up, latency down, size down) and chooses the fastest
   candidate within the budget that is at least ``min_speedup`` times faster than the
   baseline, or, with ``size_only=True``, the smallest one within the budget. When no
   candidate beats the baseline it says so (``result.note`` and the log) and returns the
   FP32 model.

**Budget** (``max_drop``): a float is an *absolute* drop in metric units (0.01 = one point
of accuracy / F1 / cosine); a string ending in ``%`` is *relative* to the baseline metric
("1%" = 0.01 x |baseline|); a plain numeric string is absolute.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from sdk.compress.calibration import CalibrationData, progress_enabled
from sdk.compress.candidates import (SENSITIVITY_CONFIG, candidate_set, default_candidates,  # noqa: F401
                                     isa_profile, sensitivity_candidates, shape_candidates)
from sdk.compress.graph_prep import load_model, op_types
from sdk.compress.recipe import Recipe
from sdk.compress.timing import (file_size, fit_feeds, measure_energy, measure_latencies,  # noqa: F401
                                 measure_latency_rounds, measure_timings, speedup_interval)
from sdk.errors import EdgewiseError

logger = logging.getLogger("edgewise")

BASELINE = "fp32"
LatencyFn = Callable[[Mapping[str, Path], Mapping[str, np.ndarray]], Mapping[str, float]]


# --- budget ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    value: float
    relative: bool

    @classmethod
    def parse(cls, max_drop: float | str) -> "Budget":
        if isinstance(max_drop, str):
            s = max_drop.strip()
            try:
                if s.endswith("%"):
                    return cls._check(cls(float(s[:-1]) / 100.0, True))
                return cls._check(cls(float(s), False))
            except ValueError as exc:
                raise ValueError(f"max_drop must be a number or a percentage like '1%', got {max_drop!r}") from exc
        return cls._check(cls(float(max_drop), False))

    @staticmethod
    def _check(b: "Budget") -> "Budget":
        if not np.isfinite(b.value) or b.value < 0:
            raise ValueError(f"max_drop must be >= 0, got {b.value}")
        return b

    def allowed(self, baseline_metric: float) -> float:
        return self.value * abs(baseline_metric) if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value * 100:g}% of baseline" if self.relative else f"{self.value:g} absolute"


# --- results -----------------------------------------------------------------------------
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


# --- the search --------------------------------------------------------------------------
def optimize(model: str | Path, calib: Any, evaluator: Callable[[Path], float], max_drop: float | str = 0.01,
             target: str = "cpu", out_dir: str | Path | None = None, size_only: bool = False,
             candidates: Mapping[str, Recipe] | Sequence[tuple[str, Recipe]] | None = None,
             extra_candidates: Mapping[str, Recipe] | Sequence[tuple[str, Recipe]] | None = None,
             sensitivity: bool | None = None, sensitivity_evals: int = 8, keep_float_k: Sequence[int] = (1, 3),
             latency_rounds: int = 7, latency_iters: int = 10, min_speedup: float = 1.05,
             latency_fn: LatencyFn | None = None, energy: bool = True, progress: bool = False,
             write: bool = True, input_shapes: Sequence[Sequence[int]] = (),
             bit_allocation: bool | None = None, allocation_reserve: float = 0.25,
             holdout: Callable[[Path], float] | None = None, device: Any | None = None,
             check_resolution: bool = True) -> OptimizeResult:
    """Search candidate recipes under an accuracy budget; see the module docstring.

    ``holdout``: a second evaluator on data the search never used (not for calibration, bit
    allocation or sensitivity). With it, every candidate's ``metric`` (and so the budget) is
    its held-out score; ``search_metric`` keeps the score on ``evaluator``'s data, and the
    report shows both. Without it both are the same.
    ``check_resolution``: refuse (ValueError saying how much data is needed) an evaluation
    where one flipped sample or detection moves the metric by more than half the budget.
    ``device``: the :class:`sdk.runtime.DeviceInfo` to build the candidate set for (default:
    this machine); combinations known to be slow on its instruction set are skipped and listed
    in ``result.skipped`` with the reason.
    ``latency_fn(paths, feeds) -> {name: ms}`` replaces the Engine measurement (tests).
    ``min_speedup``: a candidate must be this many times faster than the baseline (median of
    the paired per-round ratios) *and* the 90% interval of that ratio must lie above 1.0 to
    count as faster (timing noise on a shared CPU is several percent).
    ``sensitivity``: run the per-node analysis and add its candidates; ``None`` = only when
    the default candidates are used.
    ``input_shapes``: also try the model with its first input fixed to each of these shapes
    (``fix_input_shape``, then graph optimization or reconstructed INT8; e.g.
    ``[[1, 3, 256, 416]]`` for 16:9 frames into a 416x416 detector). Only an evaluator that
    feeds each model at its own input size (:class:`FrameDetectionAgreement`) can judge them,
    and only :class:`~sdk.compress.frames.FrameCalibration` calibrates them at their size.
    ``bit_allocation``: choose which weights can be stored at 4 bits (the rest at 8) within
    the budget (:mod:`sdk.compress.bit_allocation`) and add that mix as the candidate
    ``weights_mixed_int4``; ``None`` = only when the default candidates are used. It keeps
    ``allocation_reserve`` of the budget unused, because it tries a dozen mixes on the same
    data (YOLOX-nano, 5% budget: the mix at the floor scored F1 0.957 on the search frames and
    0.949 on held-out ones; with a quarter in reserve, 0.966 and 0.963).
    """
    from tqdm.auto import tqdm

    model = Path(model)
    load_model(model)
    budget = Budget.parse(max_drop)
    if min_speedup < 1.0:
        raise ValueError(f"min_speedup must be >= 1.0, got {min_speedup}")
    out = Path(out_dir) if out_dir is not None else Path.cwd() / "edgewise-optimize"
    work = out / "candidates"
    work.mkdir(parents=True, exist_ok=True)
    calib = calib if isinstance(calib, CalibrationData) or calib is None else CalibrationData(calib)
    if calib is None:
        raise ValueError("optimize needs calibration data (it also provides the latency input)")
    feeds = calib.for_model(model, limit=1)[0]
    metric_name = getattr(evaluator, "name", getattr(evaluator, "__name__", "metric"))
    if device is None:
        try:
            from sdk.runtime import discover_device

            device = discover_device()
        except Exception:  # noqa: BLE001 - the candidate set falls back to the generic one
            device = None
    judge = holdout if holdout is not None else evaluator
    measured_on = _measured_on(target)

    base = Candidate(BASELINE, None, path=model)
    base.search_metric = float(evaluator(model))
    base.metric = float(judge(model)) if holdout is not None else base.search_metric
    allowed = budget.allowed(base.metric)
    evaluation = {"search": _evaluation_info(evaluator), "holdout": _evaluation_info(holdout) if holdout else None}
    if check_resolution:
        for label, ev in (("search", evaluator), ("held-out", holdout)):
            _check_resolution(ev, label, allowed, metric_name)
    logger.info("baseline %s = %.4f; budget: drop <= %.4f (%s)", metric_name, base.metric, allowed, budget)

    skipped: list[dict[str, str]] = []
    per_node = candidates is None       # sensitivity and bit allocation by default (not for transformers)
    profile = isa_profile(device)
    rr = profile == "avx2"
    if candidates is None:
        cset = candidate_set(model, target, device)
        recipes, skipped, profile = dict(cset.recipes), list(cset.skipped), cset.profile
        per_node = cset.per_node
    else:
        recipes = dict(candidates)
    recipes.update(dict(extra_candidates or {}))
    recipes.update(shape_candidates(input_shapes, int8=candidates is None, reduce_range=rr,
                                    types="S8S8" if profile == "arm" else "U8S8"))
    if BASELINE in recipes:
        raise ValueError(f"candidate name {BASELINE!r} is reserved for the input model")

    sens_info = None
    if sensitivity is None:
        sensitivity = per_node
    weighted = {"Conv", "MatMul", "Gemm"} & op_types(load_model(model, check=False))
    if sensitivity and weighted:
        from sdk.compress.sensitivity import analyze_sensitivity

        try:
            sres = analyze_sensitivity(model, calib, evaluator, SENSITIVITY_CONFIG,
                                       max_evals=sensitivity_evals, work_dir=work, progress=progress)
            sens_info = sres.to_dict()
            recipes.update(sensitivity_candidates(sres, keep_float_k, reduce_range=rr, shapes=input_shapes))
        except EdgewiseError as exc:
            logger.warning("sensitivity analysis failed: %s", exc)
            sens_info = {"error": str(exc)}

    alloc_info = None
    if bit_allocation is None:
        bit_allocation = per_node
    if not 0.0 <= allocation_reserve < 1.0:
        raise ValueError(f"allocation_reserve must be in [0, 1), got {allocation_reserve}")
    if bit_allocation and weighted:
        floor = base.search_metric - budget.allowed(base.search_metric) * (1.0 - allocation_reserve)
        alloc_info = _allocate_bits(model, calib, evaluator, floor, work, progress, recipes)

    cands: list[Candidate] = []
    for name, recipe in tqdm(list(recipes.items()), desc="candidates", unit="recipe",
                             disable=not progress_enabled(progress)):
        c = Candidate(name, recipe)
        t0 = time.perf_counter()
        reports: dict[str, Any] = {}
        try:
            c.path = recipe.apply(model, work / f"{name}.onnx", calib=calib, work_dir=work, reports=reports,
                                  calibration_cache_dir=str(work / "calib_cache"))
            c.search_metric = float(evaluator(c.path))
            c.metric = float(judge(c.path)) if holdout is not None else c.search_metric
        except (EdgewiseError, ValueError) as exc:
            c.error, c.path = str(exc), None
            logger.warning("candidate %s failed: %s", name, exc)
        c.report = reports or None
        c.build_s = time.perf_counter() - t0
        cands.append(c)

    ok = [c for c in cands if c.ok]
    paths = {BASELINE: model, **{c.name: c.path for c in ok}}
    paired: dict[str, float] = {}      # median of the per-round ratios, the figure the interval is about
    if latency_fn is not None:
        lat = dict(latency_fn(paths, feeds))
    else:
        tm = measure_timings(paths, feeds, target, latency_rounds, latency_iters, progress)
        lat = {n: tm.median(n) for n in paths}
        for c in [base] + ok:
            c.cpu_ms = tm.cpu_median(c.name)
            c.win_rate = float(np.mean([x < y for x, y in zip(tm.wall[c.name], tm.wall[BASELINE])]))
            if c is not base:
                med, lo, hi = speedup_interval(tm.wall[BASELINE], tm.wall[c.name])
                c.speedup_ci = (lo, hi)
                paired[c.name] = med
    for c in [base] + ok:
        c.latency_ms = float(lat[c.name])
        c.size_bytes = file_size(c.path)
        if energy:
            try:
                c.energy = measure_energy(c.path, feeds, target)
            except Exception as exc:  # energy is informative only
                c.energy = {"joules_per_inference": None, "source": "estimate", "note": f"not measured: {exc}"}
    for c in [base] + ok:
        c.delta = c.metric - base.metric
        c.speedup = paired.get(c.name, base.latency_ms / c.latency_ms if c.latency_ms else None)
        c.size_ratio = base.size_bytes / c.size_bytes if c.size_bytes else None
        c.within_budget = c.delta >= -allowed - 1e-12
    everyone = [base] + cands
    pareto = pareto_front([base] + ok)
    for c in pareto:
        c.pareto = True

    chosen, note = choose(base, ok, size_only, min_speedup)
    if latency_fn is None and not size_only:
        chosen, note = _confirm(base, ok, chosen, note, feeds, target, max(latency_rounds, 9), latency_iters,
                                min_speedup, progress)
    chosen.chosen = True
    if measured_on:
        note += f" [{measured_on}]"
    if holdout is not None:
        note += f" [budget judged on held-out data: {evaluation['holdout']['size'] or 'see report'}]"
    logger.info("%s", note)
    result = OptimizeResult(base, everyone, chosen, pareto, note, metric_name, budget, allowed, size_only, target,
                            model, sens_info, device.model_dump(mode="json") if device is not None else {},
                            alloc_info, skipped, profile, evaluation)
    if write:
        from sdk.compress.report import write_report

        write_report(result, out)
    return result


def _measured_on(target: str) -> str:
    """'' when ``target`` runs here, else what the timings really ran on (a fallback to CPU)."""
    from sdk.runtime import resolve_providers
    from sdk.runtime.providers import PRESETS

    want = PRESETS.get(target.lower(), target)
    got = [p for p, _ in resolve_providers([target], fallback=True)]
    if want in got:
        return ""
    return f"target {target} ({want}) is not available in this onnxruntime; every latency was measured on {got[0]}"


def _evaluation_info(ev: Any) -> dict[str, Any]:
    res = ev.resolution() if hasattr(ev, "resolution") else None
    return {"size": ev.size_text() if hasattr(ev, "size_text") else "", "resolution": res}


def _check_resolution(ev: Any, label: str, allowed: float, metric: str) -> None:
    """ValueError when one flipped sample moves the metric by more than half the budget."""
    if ev is None or not hasattr(ev, "resolution"):
        return
    res = ev.resolution()
    if res is None or allowed <= 0 or res <= allowed / 2:
        return
    need = int(np.ceil(2.0 / allowed))
    what = "reference detections" if "detection" in metric else "samples (of the smaller class)" \
        if metric == "auc" else "samples"
    raise ValueError(f"the {label} evaluation is too small to resolve the budget: it holds {ev.size_text()}, so one "
                     f"flipped {'detection' if 'detection' in metric else 'sample'} moves {metric} by {res:.3f}, more "
                     f"than half the allowed drop {allowed:.3f}; it needs at least {need} {what} "
                     f"(more frames or images, or a larger --max-drop)")


def _allocate_bits(model: Path, calib: CalibrationData, evaluator: Callable[[Path], float], floor: float,
                   work: Path, progress: bool, recipes: dict[str, Recipe]) -> dict[str, Any]:
    """Run the int4/int8 bit allocation; add its mix to ``recipes``; what it found, for the report."""
    from sdk.compress.bit_allocation import allocate_low_bits

    try:
        alloc = allocate_low_bits(model, calib, evaluator, floor, progress=progress, work_dir=work)
    except EdgewiseError as exc:
        logger.warning("bit allocation failed: %s", exc)
        return {"error": str(exc)}
    if alloc.low_bit_nodes:
        recipes["weights_mixed_int4"] = Recipe([{"pass": "quantize_weights", "low_bit_nodes": alloc.low_bit_nodes}])
    else:
        logger.info("bit allocation: no weight can go to 4 bits within the budget")
    return alloc.to_dict()


def _confirm(base: Candidate, ok: list[Candidate], chosen: Candidate, note: str, feeds: Mapping[str, np.ndarray],
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
        r = measure_latency_rounds({BASELINE: base.path, chosen.name: chosen.path}, feeds, target, rounds, iters,
                                   progress, sessions=3)
        med, lo, hi = speedup_interval(r[BASELINE], r[chosen.name])
        wins = float(np.mean([x < y for x, y in zip(r[chosen.name], r[BASELINE])]))
        chosen.confirmed = {"speedup": med, "low": lo, "high": hi, "win_rate": wins}
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
        smaller = [c for c in fits if c.size_bytes < base.size_bytes]
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
    opt = next((c for c in fits if c.name == "fp32_optimized" and c.latency_ms <= base.latency_ms), None)
    tried = len(ok)
    msg = (f"no candidate within the budget is at least {min_speedup:.2f}x faster than FP32 on this hardware "
           f"({tried} tried); returning the FP32 model")
    if opt is not None:
        return opt, msg + " (graph-optimized, same accuracy, faster start)"
    return base, msg


def pareto_front(cands: Iterable[Candidate]) -> list[Candidate]:
    """Candidates not dominated on (metric higher, latency lower, size lower)."""
    cands = [c for c in cands if c.metric is not None and c.latency_ms is not None]
    front = []
    for c in cands:
        dominated = any(
            o is not c and o.metric >= c.metric and o.latency_ms <= c.latency_ms and o.size_bytes <= c.size_bytes
            and (o.metric > c.metric or o.latency_ms < c.latency_ms or o.size_bytes < c.size_bytes)
            for o in cands)
        if not dominated:
            front.append(c)
    return sorted(front, key=lambda c: c.latency_ms)
