"""Decision policy: calibrated probability -> status and priority.

The bundle's manifest carries the fitted numbers (``extra["policy"]``); this module fits
them on the validation split (:func:`fit_policy`) and applies them (:meth:`Policy.decide`).

* probability: ``sigmoid((logit_1 - logit_0) / temperature)`` (temperature scaling);
* ``threshold``: the operating point, the highest one with validation sensitivity >= the
  target (0.95 by default);
* abstain band: calibrated log-odds within ``band`` of the threshold's log-odds -> status
  ``abstain``, priority ``review`` (an uncertain study is never routine);
* ``urgent``: probability at or above the threshold whose validation specificity reaches
  ``urgent_specificity`` (positives the model is most sure of go first).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from apps.medical_imaging.metrics import binary_margin, fit_temperature, sens_spec, sigmoid

Priority = Literal["urgent", "review", "routine"]
Status = Literal["ok", "abstain", "not_analysed"]
PRIORITY_RANK: dict[str, int] = {"urgent": 0, "review": 1, "routine": 2}


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return float(np.log(p / (1 - p)))


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    status: Status
    priority: Priority
    probability: float | None
    reason: str


class Policy(BaseModel):
    """Fitted decision policy (stored in ``manifest.extra["policy"]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    temperature: float = Field(gt=0, description="temperature dividing the log-odds")
    threshold: float = Field(gt=0, lt=1, description="operating point on the calibrated probability")
    abstain_low: float = Field(ge=0, lt=1, description="lower edge of the abstain band (probability)")
    abstain_high: float = Field(gt=0, le=1, description="upper edge of the abstain band (probability)")
    urgent: float = Field(gt=0, le=1, description="probability at or above which a positive is urgent")
    target_sensitivity: float = Field(0.95, gt=0, le=1, description="sensitivity the threshold was chosen for")

    @model_validator(mode="after")
    def _ordered(self):
        if not (self.abstain_low <= self.threshold <= self.abstain_high <= self.urgent):
            raise ValueError(
                "policy must satisfy abstain_low <= threshold <= abstain_high <= urgent, got "
                f"{self.abstain_low:.4f}, {self.threshold:.4f}, {self.abstain_high:.4f}, {self.urgent:.4f}")
        return self

    def probability(self, logits: np.ndarray) -> np.ndarray:
        """Two-class logits (N, 2) -> calibrated probability of the positive class (N,)."""
        return sigmoid(binary_margin(np.atleast_2d(logits)) / self.temperature)

    def decide(self, p: float) -> Decision:
        if not np.isfinite(p):
            return Decision(status="not_analysed", priority="review", probability=None,
                            reason="model output is not a finite number")
        p = float(p)
        if self.abstain_low <= p < self.abstain_high:
            return Decision(status="abstain", priority="review", probability=p,
                            reason=f"probability {p:.3f} inside the abstain band "
                                   f"[{self.abstain_low:.3f}, {self.abstain_high:.3f}): needs a reader")
        if p >= self.urgent:
            return Decision(status="ok", priority="urgent", probability=p,
                            reason=f"probability {p:.3f} >= urgent level {self.urgent:.3f}")
        if p >= self.threshold:
            return Decision(status="ok", priority="review", probability=p,
                            reason=f"probability {p:.3f} >= operating point {self.threshold:.3f}")
        return Decision(status="ok", priority="routine", probability=p,
                        reason=f"probability {p:.3f} < operating point {self.threshold:.3f}")


def operating_threshold(y: np.ndarray, p: np.ndarray, min_sensitivity: float) -> float:
    """Highest threshold t with sensitivity of ``p >= t`` at least ``min_sensitivity``."""
    y = np.asarray(y).reshape(-1).astype(bool)
    pos = np.sort(np.asarray(p, np.float64)[y])[::-1]
    if len(pos) == 0:
        raise ValueError("cannot choose an operating point without positive examples")
    k = int(np.ceil(min_sensitivity * len(pos)))  # need at least k positives at or above t
    return float(pos[max(k, 1) - 1])


def specificity_threshold(y: np.ndarray, p: np.ndarray, min_specificity: float) -> float:
    """Lowest threshold t with specificity of ``p >= t`` at least ``min_specificity``."""
    y = np.asarray(y).reshape(-1).astype(bool)
    neg = np.sort(np.asarray(p, np.float64)[~y])
    if len(neg) == 0:
        raise ValueError("cannot choose a specificity threshold without negative examples")
    k = int(np.ceil(min_specificity * len(neg)))
    return float(np.nextafter(neg[k - 1], 1.0)) if k >= 1 else float(neg[0])


def fit_policy(logits: np.ndarray, y: np.ndarray, *, min_sensitivity: float = 0.95,
               band: float = 0.5, urgent_specificity: float = 0.98) -> tuple[Policy, dict[str, float]]:
    """Fit temperature, threshold, abstain band and urgent level on validation logits.

    Returns the policy and its validation figures (sensitivity/specificity at the operating
    point, abstain rate, and sensitivity/specificity on the studies it did not abstain on).
    """
    y = np.asarray(y).reshape(-1).astype(int)
    m = binary_margin(logits)
    t = fit_temperature(m, y)
    p = sigmoid(m / t)
    thr = operating_threshold(y, p, min_sensitivity)
    lo = float(sigmoid(_logit(thr) - band))
    hi = float(sigmoid(_logit(thr) + band))
    urgent = max(specificity_threshold(y, p, urgent_specificity), hi)
    pol = Policy(temperature=t, threshold=thr, abstain_low=lo, abstain_high=hi, urgent=min(urgent, 1.0),
                 target_sensitivity=min_sensitivity)
    sens, spec = sens_spec(y, p, thr)
    keep = ~((p >= lo) & (p < hi))
    s2, sp2 = sens_spec(y[keep], p[keep], thr)
    figures = {"val_sensitivity": sens, "val_specificity": spec,
               "val_abstain_rate": float(1 - keep.mean()),
               "val_sensitivity_decided": s2, "val_specificity_decided": sp2,
               "val_urgent_rate": float((p >= pol.urgent).mean())}
    return pol, figures
