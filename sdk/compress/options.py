"""The options of :func:`sdk.compress.optimize`, one section per concern.

    opts = OptimizeOptions(budget={"max_drop": "1%"}, latency={"rounds": 9},
                           candidates={"input_shapes": [[1, 3, 256, 416]]})
    optimize("model.onnx", calib, evaluator, opts)

Every section is a frozen pydantic model that rejects unknown keys, so a misspelt option
is an error that names it. :meth:`OptimizeOptions.from_kwargs` reads the flat keyword
arguments ``optimize`` took before the sections existed (``max_drop=``, ``latency_rounds=``...).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sdk.compress.budget import Budget
from sdk.compress.recipe import Recipe
from sdk.runtime import DeviceInfo

Evaluator = Callable[[Path], float]
#: ``latency_fn(paths, feeds) -> {name: ms}``: replaces the interleaved Engine measurement (tests)
LatencyFn = Callable[[Mapping[str, Path], Mapping[str, np.ndarray]], Mapping[str, float]]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class BudgetOptions(_Section):
    max_drop: float | str = Field(0.01, description="allowed metric drop: a float is absolute (0.01 = one point), "
                                                    "'1%' is relative to the baseline metric")
    size_only: bool = Field(False, description="choose the smallest candidate within the budget instead of the "
                                               "fastest")
    check_resolution: bool = Field(True, description="refuse an evaluation where one flipped sample or detection "
                                                     "moves the metric by more than half the budget")

    @field_validator("max_drop")
    @classmethod
    def _parses(cls, v: float | str) -> float | str:
        Budget.parse(v)
        return v

    @property
    def parsed(self) -> Budget:
        return Budget.parse(self.max_drop)


class LatencyOptions(_Section):
    rounds: int = Field(7, ge=1, description="interleaved timing rounds of every candidate with the baseline")
    iters: int = Field(10, ge=1, description="runs per model and round (the best of them counts)")
    min_speedup: float = Field(1.05, description="a candidate must be this many times faster than the baseline "
                                                 "(median paired ratio, 90% interval above 1.0); >= 1.0")
    energy: bool = Field(True, description="measure the energy per inference (RAPL or a labelled estimate)")
    @field_validator("min_speedup")
    @classmethod
    def _at_least_one(cls, v: float) -> float:
        if v < 1.0:
            raise ValueError(f"latency.min_speedup must be >= 1.0, got {v}")
        return v

    measure: Optional[LatencyFn] = Field(None, description="latency_fn(paths, feeds) -> {name: ms} instead of "
                                                           "the Engine measurement (tests); no confirmation")


class SensitivityOptions(_Section):
    enabled: Optional[bool] = Field(None, description="run the per-node analysis and add its keep-float "
                                                      "candidates; None = only with the default candidates")
    evals: int = Field(8, ge=1, description="most groups of nodes the analysis quantizes and evaluates")
    keep_float_k: tuple[int, ...] = Field((1, 3), description="candidates keeping the k most sensitive groups "
                                                              "in float, one per k")


class BitAllocationOptions(_Section):
    enabled: Optional[bool] = Field(None, description="choose which weights go to 4 bits within the budget "
                                                      "(weights_mixed_int4); None = only with the default "
                                                      "candidates")
    reserve: float = Field(0.25, description="share of the budget the allocation leaves unused, in [0, 1) "
                                             "(it tries a dozen mixes on the same data)")

    @field_validator("reserve")
    @classmethod
    def _in_range(cls, v: float) -> float:
        if not 0.0 <= v < 1.0:
            raise ValueError(f"bit_allocation.reserve (allocation_reserve) must be in [0, 1), got {v}")
        return v


class DataOptions(_Section):
    holdout: Optional[Evaluator] = Field(None, description="an evaluator on data the search never used; with "
                                                           "it the budget is judged on held-out scores")


class CandidateOptions(_Section):
    recipes: Optional[dict[str, Recipe]] = Field(None, description="the candidate recipes; None = the default "
                                                                   "set for the device")
    extra: dict[str, Recipe] = Field(default_factory=dict, description="recipes tried in addition")
    input_shapes: tuple[tuple[int, ...], ...] = Field((), description="also try the model with its first input "
                                                                      "fixed to each of these shapes")
    device: Optional[DeviceInfo] = Field(None, description="the device to build the candidate set for (default: "
                                                           "this machine)")
    relu_distill: bool = Field(False, description="also try INT8 of a ReLU student distilled from a SiLU network "
                                                  "(sdk.compress.relu_distill; trains once, needs PyTorch)")
    relu_distill_steps: int = Field(600, ge=1, description="training steps of the ReLU student")

    @field_validator("recipes", "extra", mode="before")
    @classmethod
    def _as_dict(cls, v: Any) -> Any:
        return dict(v) if v is not None and not isinstance(v, Mapping) else v


class OptimizeOptions(_Section):
    """Everything :func:`~sdk.compress.optimize` takes besides the model, data and evaluator."""

    target: str = Field("cpu", description="execution provider preset the candidates are timed on")
    out_dir: Optional[Path] = Field(None, description="where candidates and the report go (default: "
                                                      "./edgewise-optimize)")
    write: bool = Field(True, description="write report.json / report.md / pareto.png into out_dir")
    progress: bool = Field(False, description="progress bars (on a terminal)")
    budget: BudgetOptions = Field(default_factory=BudgetOptions, description="the accuracy budget")
    latency: LatencyOptions = Field(default_factory=LatencyOptions, description="how candidates are timed")
    sensitivity: SensitivityOptions = Field(default_factory=SensitivityOptions,
                                            description="the per-node sensitivity analysis")
    bit_allocation: BitAllocationOptions = Field(default_factory=BitAllocationOptions,
                                                 description="the int4/int8 weight bit allocation")
    data: DataOptions = Field(default_factory=DataOptions, description="held-out evaluation")
    candidates: CandidateOptions = Field(default_factory=CandidateOptions, description="what is tried")

    @classmethod
    def from_kwargs(cls, **kw: Any) -> "OptimizeOptions":
        """The flat keyword arguments of the earlier ``optimize()`` signature, in sections."""
        unknown = set(kw) - set(_FLAT)
        if unknown:
            raise TypeError(f"optimize() got unexpected keyword arguments {sorted(unknown)}; expected "
                            f"OptimizeOptions fields or {sorted(_FLAT)}")
        sections: dict[str, Any] = {}
        for name, value in kw.items():
            section, field = _FLAT[name]
            if section is None:
                sections[field] = value
            else:
                sections.setdefault(section, {})[field] = value
        return cls.model_validate(sections)


#: flat name -> (section, field); section None = a top-level field
_FLAT: dict[str, tuple[str | None, str]] = {
    "max_drop": ("budget", "max_drop"), "size_only": ("budget", "size_only"),
    "check_resolution": ("budget", "check_resolution"), "target": (None, "target"), "out_dir": (None, "out_dir"),
    "write": (None, "write"), "progress": (None, "progress"),
    "latency_rounds": ("latency", "rounds"), "latency_iters": ("latency", "iters"),
    "min_speedup": ("latency", "min_speedup"), "energy": ("latency", "energy"), "latency_fn": ("latency", "measure"),
    "sensitivity": ("sensitivity", "enabled"), "sensitivity_evals": ("sensitivity", "evals"),
    "keep_float_k": ("sensitivity", "keep_float_k"),
    "bit_allocation": ("bit_allocation", "enabled"), "allocation_reserve": ("bit_allocation", "reserve"),
    "holdout": ("data", "holdout"),
    "candidates": ("candidates", "recipes"), "extra_candidates": ("candidates", "extra"),
    "input_shapes": ("candidates", "input_shapes"), "device": ("candidates", "device"),
}
