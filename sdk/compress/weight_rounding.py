"""Rounding weights to a symmetric integer grid, optionally error-compensating (GPTQ).

All functions take a weight as a 2-D array ``W[out, in]`` (one row per output channel;
a Conv kernel flattened over ``in x kh x kw``) and return integer codes ``Q`` such that
``W ~= Q * scale[:, None]``.

* :func:`choose_scales` — one scale per row; with ``H`` (the layer's input second moment,
  ``E[x x^T]``) the clipping ratio of each row is chosen to minimise the *output* error
  ``d^T H d``, not the weight error.
* :func:`round_nearest` — round to nearest (RTN).
* :func:`gptq` — Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative
  Pre-trained Transformers" (ICLR 2023): columns are rounded one at a time and the rounding
  error is pushed onto the columns not yet rounded, weighted by the inverse of ``H``, so the
  layer's output (not each weight) stays close. Columns go in order of decreasing ``H``
  diagonal ("act-order").
* :func:`relative_output_error` — ``E||(W - Wq) x||^2 / E||W x||^2`` from ``H``: how much
  of the layer's output signal the rounding costs; used to rank layers for low bit widths.
"""
from __future__ import annotations

import numpy as np

__all__ = ["qrange", "choose_scales", "round_nearest", "gptq", "relative_output_error"]


def qrange(bits: int) -> tuple[int, int]:
    """Symmetric signed range: int8 -> (-127, 127), int4 -> (-7, 7) (zero exactly representable);
    7 bits (-63, 63) is int8 storage with onnxruntime's ``reduce_range``."""
    if bits not in (4, 7, 8):
        raise ValueError(f"bits must be 4, 7 or 8, got {bits}")
    q = 2 ** (bits - 1) - 1
    return -q, q


def _err(d: np.ndarray, h: np.ndarray | None) -> np.ndarray:
    if h is None:
        return (d * d).sum(1)
    return np.einsum("oi,ij,oj->o", d, h, d)


def choose_scales(w: np.ndarray, bits: int, h: np.ndarray | None = None, search: bool = True,
                  ratios: np.ndarray | None = None) -> np.ndarray:
    """One scale per row: ``max|w_row| * r / qmax`` with the ratio ``r`` that minimises the
    (output, when ``h`` is given) rounding error; ``search=False`` keeps ``r = 1`` (min-max)."""
    lo, hi = qrange(bits)
    amax = np.maximum(np.abs(w).max(1), 1e-12)
    best = amax / hi
    if not search:
        return best.astype(np.float32)
    best_err = np.full(len(w), np.inf)
    for r in (np.linspace(1.0, 0.5, 11) if ratios is None else ratios):
        s = amax * r / hi
        d = w - np.clip(np.rint(w / s[:, None]), lo, hi) * s[:, None]
        e = _err(d, h)
        better = e < best_err
        best_err[better], best[better] = e[better], s[better]
    return best.astype(np.float32)


def round_nearest(w: np.ndarray, scales: np.ndarray, bits: int) -> np.ndarray:
    lo, hi = qrange(bits)
    return np.clip(np.rint(w / scales[:, None]), lo, hi).astype(np.int8)


def gptq(w: np.ndarray, h: np.ndarray, scales: np.ndarray, bits: int, damp: float = 0.01,
         block: int = 128) -> np.ndarray:
    """Integer codes for ``w`` rounded column by column with error feedback through ``h``."""
    lo, hi = qrange(bits)
    w = np.array(w, dtype=np.float64)
    h = np.array(h, dtype=np.float64)
    if h.shape != (w.shape[1], w.shape[1]):
        raise ValueError(f"H must be {w.shape[1]}x{w.shape[1]} for a weight with {w.shape[1]} inputs, got {h.shape}")
    dead = np.diag(h) <= 0          # inputs that are always zero: any weight works, use 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    perm = np.argsort(-np.diag(h), kind="stable")
    w, h = w[:, perm], h[perm][:, perm]
    h[np.diag_indices_from(h)] += damp * np.mean(np.diag(h))
    try:
        hinv = np.linalg.cholesky(np.linalg.inv(h)).T        # upper Cholesky factor of H^-1
    except np.linalg.LinAlgError:
        return round_nearest(w[:, np.argsort(perm)], scales, bits)
    s = np.asarray(scales, np.float64)
    q = np.zeros(w.shape, dtype=np.int8)
    n = w.shape[1]
    for b0 in range(0, n, block):        # lazy batch updates: the tail is touched once per block
        b1 = min(b0 + block, n)
        err = np.zeros((w.shape[0], b1 - b0))
        for i in range(b0, b1):
            qi = np.clip(np.rint(w[:, i] / s), lo, hi)
            q[:, i] = qi
            e = (w[:, i] - qi * s) / hinv[i, i]
            w[:, i + 1:b1] -= np.outer(e, hinv[i, i + 1:b1])
            err[:, i - b0] = e
        w[:, b1:] -= err @ hinv[b0:b1, b1:]
    return q[:, np.argsort(perm)]


def relative_output_error(w: np.ndarray, wq: np.ndarray, h: np.ndarray | None) -> float:
    """``E||(w - wq) x||^2 / E||w x||^2`` (plain weight error when ``h`` is None)."""
    d = np.asarray(w, np.float64) - np.asarray(wq, np.float64)
    w = np.asarray(w, np.float64)
    num, den = _err(d, h).sum(), _err(w, h).sum()
    return float(num / den) if den > 0 else 0.0
