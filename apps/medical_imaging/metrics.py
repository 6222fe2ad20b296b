"""Classification and calibration metrics in plain numpy (AUC, sens/spec, ECE, temperature)."""
from __future__ import annotations

import numpy as np


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the rank statistic (ties count one half)."""
    y = np.asarray(y).reshape(-1).astype(bool)
    s = np.asarray(score, np.float64).reshape(-1)
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        raise ValueError(f"AUC needs both classes, got {npos} positives and {nneg} negatives")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    # average ranks over ties
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return float((ranks[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def sens_spec(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity of ``p >= threshold``."""
    y = np.asarray(y).reshape(-1).astype(bool)
    pred = np.asarray(p).reshape(-1) >= threshold
    sens = float((pred & y).sum() / max(y.sum(), 1))
    spec = float((~pred & ~y).sum() / max((~y).sum(), 1))
    return sens, spec


def accuracy(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    return float(((np.asarray(p) >= threshold) == np.asarray(y).astype(bool)).mean())


def ece(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the positive-class probability (equal-width bins)."""
    y = np.asarray(y).reshape(-1).astype(np.float64)
    p = np.asarray(p, np.float64).reshape(-1)
    conf = np.where(p >= 0.5, p, 1 - p)
    correct = ((p >= 0.5) == (y > 0.5)).astype(np.float64)
    edges = np.linspace(0.5, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return float(total)


def binary_margin(logits: np.ndarray) -> np.ndarray:
    """Two-class logits (N, 2) -> log-odds of class 1 (N,)."""
    z = np.asarray(logits, np.float64)
    return z[:, 1] - z[:, 0]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def fit_temperature(margin: np.ndarray, y: np.ndarray) -> float:
    """Temperature T > 0 minimising the validation negative log-likelihood of sigmoid(margin / T)."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y).reshape(-1).astype(np.float64)
    m = np.asarray(margin, np.float64)

    def nll(log_t: float) -> float:
        p = np.clip(sigmoid(m / np.exp(log_t)), 1e-12, 1 - 1e-12)
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))
