"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization") as an FP32 rewrite.

For two convolutions in a chain, ``A -> f -> B`` with ``f`` positively homogeneous
(``f(x / s) = f(x) / s`` for ``s > 0``: identity, Relu, LeakyRelu), dividing A's output
channel ``i`` (its weight row and bias) by ``s_i`` and multiplying B's input channel ``i`` by
``s_i`` leaves the network's function unchanged. Choosing ``s_i = sqrt(r1_i / r2_i)``, where
``r1_i`` is the range of channel ``i`` on A's side and ``r2_i`` the range of B's weights that
read it, makes both ``sqrt(r1_i * r2_i)``: the ranges even out across channels. With
per-channel weight quantization A's rows gain nothing from it, but the *activation* between A
and B is quantized per tensor, so with calibration data ``r1_i`` is the activation's
per-channel range (the data-aware variant) and its small channels stop drowning in the
shared 8-bit grid; without data ``r1_i`` is A's weight range (the paper's data-free form).

SiLU (``x * sigmoid(x)``, YOLOX's activation) is **not** homogeneous: ``s * silu(x / s)``
differs from ``silu(x)`` except where ``x`` is far from zero. It is handled with data, per
channel: the scale is pulled towards 1 (``s_i ** t``, the largest ``t`` in [0, 1] found by
bisection) until the relative mean squared change of that channel's SiLU output on the
calibration samples is below ``silu_tol``, and the mean of the change that remains,
pushed through B's weights, is subtracted from B's bias (bias correction). Without data
SiLU pairs are left alone. Depthwise B (``group == channels``) and plain B (``group == 1``)
are handled; other grouped convs, tensors read by anything else, and graph outputs end a
chain.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

logger = logging.getLogger("edgewise")

__all__ = ["EqualizeReport", "equalizable_pairs", "equalize"]

#: samples kept per channel of a SiLU pair's pre-activation, for the tolerance check
SAMPLES_PER_CHANNEL = 2048
HOMOGENEOUS = ("Relu", "LeakyRelu")


@dataclass
class Pair:
    a: onnx.NodeProto          # first Conv
    b: onnx.NodeProto          # second Conv
    act: str                   # "none", "Relu", "LeakyRelu" or "SiLU"


@dataclass
class EqualizeReport:
    pairs: list[dict[str, Any]] = field(default_factory=list)   # per pair: names, activation, spreads, scales

    def summary(self) -> dict[str, Any]:
        eq = [p for p in self.pairs if p["equalized"]]
        return {"pairs": len(self.pairs), "equalized": len(eq),
                "spread_before": float(np.median([p["spread_before"] for p in eq])) if eq else None,
                "spread_after": float(np.median([p["spread_after"] for p in eq])) if eq else None,
                "silu_kept_fraction": float(np.mean([p["kept"] for p in eq if p["act"] == "SiLU"]))
                if any(p["act"] == "SiLU" for p in eq) else None}


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def equalizable_pairs(model: onnx.ModelProto) -> list[Pair]:
    """The ``Conv -> [Relu | LeakyRelu | SiLU] -> Conv`` chains whose middle tensors nobody
    else reads (see the module docstring)."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    outputs = {o.name for o in g.output}
    cons: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for t in n.input:
            cons.setdefault(t, []).append(n)

    def only(t: str) -> list[onnx.NodeProto]:
        return [] if t in outputs else cons.get(t, [])

    def conv_ok(n: onnx.NodeProto) -> bool:     # constant weight and bias that no other node reads
        own = [t for t in n.input[1:3] if t]
        return (n.op_type == "Conv" and len(n.input) > 1 and all(t in inits and len(cons[t]) == 1 for t in own))

    out = []
    for a in g.node:
        if not conv_ok(a):
            continue
        y = a.output[0]
        c = only(y)
        act, mid = "none", y
        if len(c) == 1 and c[0].op_type in HOMOGENEOUS:
            act, mid = c[0].op_type, c[0].output[0]
        elif len(c) == 2 and {n.op_type for n in c} == {"Sigmoid", "Mul"}:
            sig = next(n for n in c if n.op_type == "Sigmoid")
            mul = next(n for n in c if n.op_type == "Mul")
            if sorted(mul.input) == sorted([y, sig.output[0]]) and only(sig.output[0]) == [mul]:
                act, mid = "SiLU", mul.output[0]
            else:
                continue
        elif len(c) != 1:
            continue
        b = only(mid)
        if len(b) != 1 or not conv_ok(b[0]) or b[0].input[0] != mid:
            continue
        out.append(Pair(a, b[0], act))
    return out


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _silu_scale(x: np.ndarray, s: float, tol: float) -> float:
    """The largest ``s ** t`` (t in [0, 1]) whose ``s' * silu(x / s')`` stays within ``tol``
    relative mean squared error of ``silu(x)``."""
    ref = _silu(x)
    power = float(np.mean(ref ** 2)) + 1e-12

    def err(sc: float) -> float:
        return float(np.mean((sc * _silu(x / sc) - ref) ** 2)) / power

    if err(s) <= tol:
        return s
    lo, hi = 0.0, 1.0
    for _ in range(12):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if err(s ** mid) <= tol else (lo, mid)
    return float(s ** lo)


def _collect(model: onnx.ModelProto, tensors: Sequence[str], feeds: Sequence[Mapping[str, np.ndarray]]
             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per tensor (NCHW): the per-channel max |value| and up to SAMPLES_PER_CHANNEL values per channel."""
    import onnxruntime as ort

    from sdk.compress.prune_reconstruct import with_outputs

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(with_outputs(model, tensors), so, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    rng = np.random.default_rng(0)
    amax: dict[str, np.ndarray] = {}
    samples: dict[str, list[np.ndarray]] = {t: [] for t in tensors}
    per_feed = max(1, SAMPLES_PER_CHANNEL // max(len(feeds), 1))
    for f in feeds:
        for t, v in zip(tensors, sess.run(list(tensors), {k: x for k, x in f.items() if k in names}), strict=True):
            v = np.asarray(v, np.float32)
            ch = np.moveaxis(v, 1, 0).reshape(v.shape[1], -1)
            m = np.abs(ch).max(1)
            amax[t] = m if t not in amax else np.maximum(amax[t], m)
            samples[t].append(ch[:, rng.integers(0, ch.shape[1], per_feed)] if ch.shape[1] > per_feed else ch)
    return amax, {t: np.concatenate(v, 1) for t, v in samples.items() if v}


def equalize(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]] | None = None, *,
             silu_tol: float = 1e-3, max_scale: float = 16.0) -> EqualizeReport:
    """Equalize every pair of :func:`equalizable_pairs` in ``model`` (in place; see the module
    docstring); ``feeds`` make it data-aware and allow SiLU pairs. Scales are clipped to
    ``[1 / max_scale, max_scale]``."""
    inits = {t.name: t for t in model.graph.initializer}
    pairs = equalizable_pairs(model)
    if not feeds:
        pairs = [p for p in pairs if p.act != "SiLU"]
    amax, samples = (_collect(model, [p.a.output[0] for p in pairs], feeds) if feeds and pairs else ({}, {}))
    rep = EqualizeReport()
    for p in pairs:
        wa = numpy_helper.to_array(inits[p.a.input[1]]).astype(np.float64)
        wb = numpy_helper.to_array(inits[p.b.input[1]]).astype(np.float64)
        c = wa.shape[0]
        gb = int(_attr(p.b, "group", 1))
        if wb.ndim != 4 or gb not in (1, c) or (gb == 1 and wb.shape[1] != c) or (gb == c and wb.shape[0] != c):
            continue
        r2 = np.abs(wb).max(axis=(0, 2, 3)) if gb == 1 else np.abs(wb).reshape(c, -1).max(1)
        r1 = amax.get(p.a.output[0], np.abs(wa).reshape(c, -1).max(1))
        ok = (r1 > 1e-12) & (r2 > 1e-12)
        s = np.ones(c)
        s[ok] = np.sqrt(r1[ok] / r2[ok])
        s[ok] /= np.exp(np.mean(np.log(s[ok])))          # a global factor changes nothing; keep s around 1
        s = np.clip(s, 1.0 / max_scale, max_scale)
        entry: dict[str, Any] = {"a": p.a.name, "b": p.b.name, "act": p.act, "equalized": bool(ok.any())}
        shift = np.zeros(c)
        if p.act == "SiLU":
            x = samples[p.a.output[0]].astype(np.float64)
            target = s.copy()
            s = np.array([_silu_scale(x[i], s[i], silu_tol) if ok[i] else 1.0 for i in range(c)])
            # share of the wanted equalization that the tolerance let through (log scale)
            moved = np.abs(np.log(target[ok]))
            entry["kept"] = float(np.abs(np.log(s[ok])).sum() / moved.sum()) if moved.sum() > 0 else 1.0
            shift = np.array([float(np.mean(s[i] * _silu(x[i] / s[i]) - _silu(x[i]))) for i in range(c)])
        entry["spread_before"], entry["spread_after"] = _spread(r1[ok]), _spread(r1[ok] / s[ok])
        entry["scale_range"] = [float(s.min()), float(s.max())]
        wa /= s.reshape(-1, *[1] * (wa.ndim - 1))
        _store(inits, p.a.input[1], wa)
        if len(p.a.input) > 2 and p.a.input[2]:
            _store(inits, p.a.input[2], numpy_helper.to_array(inits[p.a.input[2]]).astype(np.float64) / s)
        # B reads channel i scaled by 1/s_i (plus, for SiLU, a change whose mean is shift_i / s_i)
        if gb == 1:
            wb *= s.reshape(1, -1, 1, 1)
            out_shift = np.einsum("oikl,i->o", wb, shift / s)
        else:
            wb *= s.reshape(-1, 1, 1, 1)
            out_shift = wb.reshape(c, -1).sum(1) * shift / s
        _store(inits, p.b.input[1], wb)
        if p.act == "SiLU" and np.any(out_shift):
            _bias(model, inits, p.b, wb.shape[0])
            _store(inits, p.b.input[2], numpy_helper.to_array(inits[p.b.input[2]]).astype(np.float64) - out_shift)
        rep.pairs.append(entry)
    logger.info("cross-layer equalization: %s", rep.summary())
    return rep


def _spread(r: np.ndarray) -> float:
    """Largest channel range over the median one (1.0 for no channel)."""
    return float(r.max() / np.median(r)) if r.size else 1.0


def _store(inits: dict[str, onnx.TensorProto], name: str, arr: np.ndarray) -> None:
    t = inits[name]
    dtype = numpy_helper.to_array(t).dtype
    t.CopyFrom(numpy_helper.from_array(np.asarray(arr).astype(dtype), name))


def _bias(model: onnx.ModelProto, inits: dict[str, onnx.TensorProto], conv: onnx.NodeProto, n_out: int) -> None:
    """Give ``conv`` a zero bias initializer of its own when it has none."""
    if len(conv.input) > 2 and conv.input[2]:
        return
    name = conv.name + "_equalize_bias"
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(n_out, np.float32), name))
    inits[name] = model.graph.initializer[-1]
    if len(conv.input) < 3:
        conv.input.append(name)
    else:
        conv.input[2] = name
