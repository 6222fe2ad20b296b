"""The accuracy budget of a search and the check that the evaluation can resolve it.

**Budget** (``max_drop``): a float is an *absolute* drop in metric units (0.01 = one point
of accuracy / F1 / cosine); a string ending in ``%`` is *relative* to the baseline metric
("1%" = 0.01 x |baseline|); a plain numeric string is absolute.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Budget", "check_resolution", "evaluation_info"]


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


def evaluation_info(ev: Any) -> dict[str, Any]:
    """What an evaluator holds (``size_text()``) and how far one flipped sample moves it."""
    res = ev.resolution() if hasattr(ev, "resolution") else None
    return {"size": ev.size_text() if hasattr(ev, "size_text") else "", "resolution": res}


def check_resolution(ev: Any, label: str, allowed: float, metric: str) -> None:
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
