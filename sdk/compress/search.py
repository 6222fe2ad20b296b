"""Accuracy-budgeted search: try candidate recipes, measure, choose.

``optimize(model, calib, evaluator, OptimizeOptions(...))``:

1. evaluates the input model (the FP32 baseline) with ``evaluator`` (higher is better);
2. builds candidate recipes (graph-optimized FP32, dynamic INT8, static INT8 QDQ / QOperator,
   per-tensor / per-channel, U8S8 / U8U8, with nodes kept in float by a sensitivity
   analysis, FP16 and weight-only INT4 for size, plus any recipes passed in;
   :mod:`sdk.compress.candidates`), applies each (a failure is recorded on the candidate,
   never fatal); the recipes share one :class:`~sdk.compress.workspace.Workspace`, so the
   calibration and layer statistics of the model are gathered once;
3. measures latency on the target in interleaved rounds together with the baseline, the
   file size, the metric and the energy per inference (:mod:`sdk.compress.measure`);
4. keeps the Pareto set and chooses (:mod:`sdk.compress.results`); when no candidate beats
   the baseline it says so (``result.note`` and the log) and returns the FP32 model.

The budget (``budget.max_drop``) is parsed by :class:`~sdk.compress.budget.Budget`; every
option is described in :mod:`sdk.compress.options`.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from sdk.compress.budget import Budget, check_resolution, evaluation_info
from sdk.compress.calibration import CalibrationData, progress_enabled
from sdk.compress.candidates import (
    SENSITIVITY_CONFIG,
    candidate_set,
    isa_profile,
    needs_reduce_range,
    relu_candidates,
    sensitivity_candidates,
    shape_candidates,
)
from sdk.compress.graph_prep import load_model, op_types
from sdk.compress.measure import confirm, measure_candidates, measured_on
from sdk.compress.options import OptimizeOptions
from sdk.compress.recipe import Recipe
from sdk.compress.results import BASELINE, Candidate, OptimizeResult, choose, pareto_front
from sdk.compress.workspace import Workspace
from sdk.errors import EdgewiseError

__all__ = ["optimize", "Budget", "Candidate", "OptimizeResult", "OptimizeOptions"]

logger = logging.getLogger("edgewise")


def optimize(model: str | Path, calib: Any, evaluator: Callable[[Path], float],
             options: OptimizeOptions | None = None, **flat: Any) -> OptimizeResult:
    """Search candidate recipes under an accuracy budget; see the module docstring.

    ``options``: an :class:`OptimizeOptions` (budget, latency, sensitivity, bit allocation,
    held-out data, candidates). The flat keywords of the earlier signature (``max_drop=``,
    ``latency_rounds=``, ``holdout=``...) are still read, through
    :meth:`OptimizeOptions.from_kwargs`, when no ``options`` is given.

    ``data.holdout``: a second evaluator on data the search never used (not for calibration,
    bit allocation or sensitivity). With it, every candidate's ``metric`` (and so the budget)
    is its held-out score; ``search_metric`` keeps the score on ``evaluator``'s data.
    ``candidates.input_shapes``: also try the model with its first input fixed to each of
    these shapes (only an evaluator that feeds each model at its own input size,
    :class:`FrameDetectionAgreement`, can judge them). ``bit_allocation``: it keeps
    ``reserve`` of the budget unused, because it tries a dozen mixes on the same data
    (YOLOX-nano, 5% budget: the mix at the floor scored F1 0.957 on the search frames and
    0.949 on held-out ones; with a quarter in reserve, 0.966 and 0.963).
    """
    from tqdm.auto import tqdm

    if options is not None and flat:
        raise TypeError(f"give either options or flat keyword arguments, not both (got {sorted(flat)})")
    opts = options if options is not None else OptimizeOptions.from_kwargs(**flat)
    model = Path(model)
    load_model(model)
    budget = opts.budget.parsed
    out = opts.out_dir if opts.out_dir is not None else Path.cwd() / "edgewise-optimize"
    work = out / "candidates"
    work.mkdir(parents=True, exist_ok=True)
    calib = calib if isinstance(calib, CalibrationData) or calib is None else CalibrationData(calib)
    if calib is None:
        raise ValueError("optimize needs calibration data (it also provides the latency input)")
    feeds = calib.for_model(model, limit=1)[0]
    workspace = Workspace(calib, cache_dir=work / "calib_cache")
    metric_name = getattr(evaluator, "name", getattr(evaluator, "__name__", "metric"))
    device = opts.candidates.device if opts.candidates.device is not None else _this_device()
    holdout = opts.data.holdout
    judge = holdout if holdout is not None else evaluator

    base = Candidate(BASELINE, None, path=model)
    base.search_metric = float(evaluator(model))
    base.metric = float(judge(model)) if holdout is not None else base.search_metric
    allowed = budget.allowed(base.metric)
    held_info = evaluation_info(holdout) if holdout is not None else None
    evaluation = {"search": evaluation_info(evaluator), "holdout": held_info}
    if opts.budget.check_resolution:
        for label, ev in (("search", evaluator), ("held-out", holdout)):
            check_resolution(ev, label, allowed, metric_name)
    logger.info("baseline %s = %.4f; budget: drop <= %.4f (%s)", metric_name, base.metric, allowed, budget)

    rr = needs_reduce_range(isa_profile(device))
    # sensitivity and bit allocation by default: the candidate set says (not transformers; no
    # sensitivity where only folded INT8 is tried)
    recipes, skipped, profile, (sens_default, alloc_default) = _candidate_recipes(model, opts, device, rr)
    weighted = {"Conv", "MatMul", "Gemm"} & op_types(load_model(model, check=False))
    sens_info = None
    if (sens_default if opts.sensitivity.enabled is None else opts.sensitivity.enabled) and weighted:
        sens_info = _sensitivity(model, calib, evaluator, opts, work, rr, recipes)
    alloc_info = None
    if (alloc_default if opts.bit_allocation.enabled is None else opts.bit_allocation.enabled) and weighted:
        floor = base.search_metric - budget.allowed(base.search_metric) * (1.0 - opts.bit_allocation.reserve)
        alloc_info = _allocate_bits(model, workspace, evaluator, floor, work, opts.progress, recipes)

    cands: list[Candidate] = []
    for name, recipe in tqdm(list(recipes.items()), desc="candidates", unit="recipe",
                             disable=not progress_enabled(opts.progress)):
        c = Candidate(name, recipe)
        t0 = time.perf_counter()
        try:
            built = recipe.apply(model, work / f"{name}.onnx", work_dir=work, workspace=workspace)
            c.path, c.report = built.path, {k: v for k, v in built.reports.items() if v} or None
            c.search_metric = float(evaluator(c.path))
            c.metric = float(judge(c.path)) if holdout is not None else c.search_metric
        except (EdgewiseError, ValueError) as exc:
            c.error, c.path = str(exc), None
            logger.warning("candidate %s failed: %s", name, exc)
        c.build_s = time.perf_counter() - t0
        cands.append(c)

    ok = [c for c in cands if c.ok]
    measure_candidates(base, ok, feeds, opts)
    for c in [base] + ok:
        assert c.metric is not None and base.metric is not None      # every built candidate was evaluated
        c.delta = c.metric - base.metric
        c.within_budget = c.delta >= -allowed - 1e-12
    pareto = pareto_front([base] + ok)
    for c in pareto:
        c.pareto = True

    lat, size_only = opts.latency, opts.budget.size_only
    chosen, note = choose(base, ok, size_only, lat.min_speedup)
    if lat.measure is None and not size_only:
        chosen, note = confirm(base, ok, chosen, note, feeds, opts.target, max(lat.rounds, 9), lat.iters,
                               lat.min_speedup, opts.progress)
    chosen.chosen = True
    where = measured_on(opts.target)
    if where:
        note += f" [{where}]"
    if held_info is not None:
        note += f" [budget judged on held-out data: {held_info['size'] or 'see report'}]"
    logger.info("%s", note)
    result = OptimizeResult(base, [base] + cands, chosen, pareto, note, metric_name, budget, allowed, size_only,
                            opts.target, model, sens_info, device.model_dump(mode="json") if device is not None
                            else {}, alloc_info, skipped, profile, evaluation)
    if opts.write:
        from sdk.compress.report import write_report

        write_report(result, out)
    return result


def _this_device() -> Any:
    try:
        from sdk.runtime import discover_device

        return discover_device()
    except Exception:  # noqa: BLE001 - the candidate set falls back to the generic one
        return None


def _candidate_recipes(model: Path, opts: OptimizeOptions, device: Any, reduce_range: bool
                       ) -> tuple[dict[str, Recipe], list[dict[str, str]], str, tuple[bool, bool]]:
    """(recipes, skipped with reasons, ISA profile, whether the sensitivity analysis and the bit
    allocation suit them) before sensitivity and bit allocation."""
    co = opts.candidates
    skipped: list[dict[str, str]] = []
    profile = isa_profile(device)
    per_node = (co.recipes is None, co.recipes is None)
    if co.recipes is None:
        cset = candidate_set(model, opts.target, device)
        recipes, skipped, profile = dict(cset.recipes), list(cset.skipped), cset.profile
        per_node = (cset.per_node and cset.sensitivity, cset.per_node)
    else:
        recipes = dict(co.recipes)
    recipes.update(co.extra)
    types = "S8S8" if profile == "arm" else "U8S8"
    recipes.update(shape_candidates([list(s) for s in co.input_shapes], int8=co.recipes is None,
                                    reduce_range=reduce_range, types=types))
    if co.relu_distill:
        relu, why = relu_candidates(model, [list(s) for s in co.input_shapes], co.relu_distill_steps, types,
                                    reduce_range)
        recipes.update(relu)
        if why is not None:
            skipped.append({"name": "relu_int8 (ReLU student)", "reason": why})
    if BASELINE in recipes:
        raise ValueError(f"candidate name {BASELINE!r} is reserved for the input model")
    return recipes, skipped, profile, per_node


def _sensitivity(model: Path, calib: CalibrationData, evaluator: Callable[[Path], float], opts: OptimizeOptions,
                 work: Path, reduce_range: bool, recipes: dict[str, Recipe]) -> dict[str, Any]:
    """Run the per-node analysis; add its keep-float candidates to ``recipes``; what it found."""
    from sdk.compress.sensitivity import analyze_sensitivity

    so = opts.sensitivity
    try:
        sres = analyze_sensitivity(model, calib, evaluator, SENSITIVITY_CONFIG, max_evals=so.evals, work_dir=work,
                                   progress=opts.progress)
    except EdgewiseError as exc:
        logger.warning("sensitivity analysis failed: %s", exc)
        return {"error": str(exc)}
    recipes.update(sensitivity_candidates(sres, so.keep_float_k, reduce_range=reduce_range,
                                          shapes=[list(s) for s in opts.candidates.input_shapes]))
    return sres.to_dict()


def _allocate_bits(model: Path, workspace: Workspace, evaluator: Callable[[Path], float], floor: float,
                   work: Path, progress: bool, recipes: dict[str, Recipe]) -> dict[str, Any]:
    """Run the int4/int8 bit allocation; add its mix to ``recipes``; what it found, for the report."""
    from sdk.compress.bit_allocation import allocate_low_bits

    try:
        alloc = allocate_low_bits(model, workspace.calib, evaluator, floor, progress=progress, work_dir=work,
                                  workspace=workspace)
    except EdgewiseError as exc:
        logger.warning("bit allocation failed: %s", exc)
        return {"error": str(exc)}
    if alloc.low_bit_nodes:
        recipes["weights_mixed_int4"] = Recipe([{"pass": "quantize_weights", "low_bit_nodes": alloc.low_bit_nodes}])
    else:
        logger.info("bit allocation: no weight can go to 4 bits within the budget")
    return alloc.to_dict()
