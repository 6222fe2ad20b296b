"""Which weights can drop from 8 to 4 bits within an accuracy budget (mixed precision).

1. **Sensitivity per layer, measured.** Starting from every weight at int8, each eligible
   layer alone is put at int4 and the model's outputs on a few calibration samples are
   compared with FP32: the error is the mean over output channels of the squared error
   divided by that channel's variance (so box coordinates in pixels do not drown scores
   in [0, 1]), minus the all-int8 model's error. A layer's own rounding error is a poor
   guide: YOLOX-nano's class-prediction convs round well but move every score.
2. **Order** layers by sensitivity per byte saved (a greedy knapsack).
3. **Bisect** on how many of them, in that order, go to 4 bits, judging each mix with the
   user's evaluator against the budget floor: the longest prefix found within the budget
   wins (about log2(layers) evaluations).

The result names the nodes, so the recipe that reproduces the model is explicit
(``quantize_weights`` with ``low_bit_nodes``).
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sdk.compress.calibration import CalibrationData
from sdk.compress.evaluators import open_session
from sdk.compress.quantize_weights import WeightQuantizer
from sdk.compress.workspace import Workspace

logger = logging.getLogger("edgewise")

__all__ = ["BitAllocation", "allocate_low_bits", "layer_sensitivity"]


@dataclass
class BitAllocation:
    low_bit_nodes: list[str]
    metric: float | None                      # evaluator on the chosen mix (None: nothing chosen)
    floor: float
    order: list[str]                          # candidates, most worth converting first
    sensitivity: dict[str, float]
    trials: list[dict[str, Any]] = field(default_factory=list)   # {"k", "metric", "bytes", "ok"}

    def to_dict(self) -> dict[str, Any]:
        return {"low_bit_nodes": self.low_bit_nodes, "metric": self.metric, "floor": self.floor,
                "order": self.order, "sensitivity": {k: round(v, 6) for k, v in self.sensitivity.items()},
                "trials": self.trials}


def _normalized_error(ref: list[list[np.ndarray]], got: list[list[np.ndarray]], var: list[np.ndarray]) -> float:
    errs = []
    for r_outs, g_outs in zip(ref, got, strict=True):
        for r, g, v in zip(r_outs, g_outs, var, strict=True):
            d = (np.asarray(g, np.float64) - r) ** 2
            errs.append((d.reshape(-1, d.shape[-1]) / v).mean())
    return float(np.mean(errs))


def _outputs(path: Path, feeds: list[dict]) -> list[list[np.ndarray]]:
    sess = open_session(path)
    return [[np.asarray(o, np.float64) for o in sess.run(None, f)] for f in feeds]


def layer_sensitivity(wq: WeightQuantizer, nodes: list[str], feeds: list[dict], work: Path,
                      progress: bool = False) -> dict[str, float]:
    """Extra normalized output error of putting each node alone at 4 bits (the rest at 8)."""
    from sdk.progress import progress_bar

    ref = _outputs(wq.path, feeds)
    var = [np.maximum(np.concatenate([r[i].reshape(-1, r[i].shape[-1]) for r in ref]).var(0), 1e-12)
           for i in range(len(ref[0]))]
    base_path = work / "all_int8.onnx"
    wq.write(base_path)
    base = _normalized_error(ref, _outputs(base_path, feeds), var)
    out = {}
    for node in progress_bar(nodes, desc="int4 sensitivity", unit="layer", enabled=progress):
        p = work / "one_int4.onnx"
        wq.write(p, {node: 4})
        out[node] = max(_normalized_error(ref, _outputs(p, feeds), var) - base, 0.0)
    return out


def _bisect(order: list[str], score: Callable[[list[str]], float], floor: float) -> int:
    """The longest prefix of ``order`` found to score >= floor (0 when none does)."""
    if score(order) >= floor:
        return len(order)
    lo, hi = 0, len(order)            # hi fails; lo is the longest known to pass (0: none tried)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if score(order[:mid]) >= floor:
            lo = mid
        else:
            hi = mid
    return lo


def allocate_low_bits(model: str | Path, calib: Any, evaluator: Callable[[Path], float], floor: float,
                      min_elements: int = 1024, samples: int = 8, orders: tuple[str, ...] = ("size", "sensitivity"),
                      progress: bool = False, quantizer: WeightQuantizer | None = None,
                      work_dir: str | Path | None = None, workspace: Workspace | None = None) -> BitAllocation:
    """The largest saving of weights at 4 bits (rest at 8) whose evaluator score is >= ``floor``.

    Eligible: weights of one-group Convs / Gemm / MatMul with at least ``min_elements``
    elements (depthwise kernels have too few values per channel for 16 levels). Each of
    ``orders`` is bisected ("size": largest weight first; "sensitivity": least measured
    output error per byte saved first) and the passing mix that saves the most bytes wins:
    neither order is reliably better (YOLOX-nano: largest-first went further).
    ``workspace``: caches the layer statistics for the quantizers that later run on the same data.
    """
    unknown = set(orders) - {"size", "sensitivity"}
    if unknown or not orders:
        raise ValueError(f"orders must be drawn from 'size' and 'sensitivity', got {orders}")
    data = calib if isinstance(calib, CalibrationData) else CalibrationData(calib)
    wq = quantizer or WeightQuantizer(model, calib=data, progress=progress, workspace=workspace)
    eligible = [s.node for s in wq.specs if s.group == 1 and s.size >= min_elements and s.axis is not None]
    if not eligible:
        return BitAllocation([], None, floor, [], {})
    saved = {n: wq.spec(n).size / 2 for n in eligible}          # bytes saved going 8 -> 4 bits
    tmp = tempfile.TemporaryDirectory(prefix="edgewise-bits-", dir=work_dir)
    try:
        work = Path(tmp.name)
        sens: dict[str, float] = {}
        if "sensitivity" in orders:
            sens = layer_sensitivity(wq, eligible, data.for_model(wq.path, samples), work, progress)
        trials: list[dict[str, Any]] = []
        seen: dict[frozenset, float] = {}

        def score(nodes: list[str]) -> float:
            key = frozenset(nodes)
            if key not in seen:
                p = work / "trial.onnx"
                wq.write(p, {n: 4 for n in nodes})
                seen[key] = float(evaluator(p))
                trials.append({"order": label, "k": len(nodes), "metric": seen[key], "bytes": p.stat().st_size,
                               "ok": seen[key] >= floor})
                logger.info("bit allocation (%s order): %d of %d layers at int4 -> metric %.4f (floor %.4f)",
                            label, len(nodes), len(eligible), seen[key], floor)
            return seen[key]

        best: tuple[float, list[str], list[str]] = (0.0, [], eligible)
        for label in orders:
            if label == "size":
                order = sorted(eligible, key=lambda n: -saved[n])
            else:
                order = sorted(eligible, key=lambda n: (sens[n] / saved[n], -saved[n]))
            k = _bisect(order, score, floor)
            gain = sum(saved[n] for n in order[:k])
            if k and gain > best[0]:
                best = (gain, order[:k], order)
        _, chosen, order = best
        metric = seen.get(frozenset(chosen)) if chosen else None
        return BitAllocation(chosen, metric, floor, order, sens, trials)
    finally:
        tmp.cleanup()
