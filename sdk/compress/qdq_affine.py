"""Scalar scale-and-shift nodes absorbed into an 8-bit grid (:func:`absorb_affine`).

PP-LCNetV3 ends each hard-swish with a learnable ``y = a * x + b`` (scalars) before a padded
depthwise convolution; ``fold_affine`` cannot fold the shift into that convolution (its padded
border would see ``b`` instead of 0), so the QDQ graph quantizes the tensor three times:

    x -> Q1 -> DQ1 -> Mul(a) -> Q2 -> DQ2 -> Add(b) -> Q3 -> DQ3 -> Conv

and onnxruntime runs a ``QLinearMul`` and a ``QLinearAdd`` (a re-quantizing pass over the feature
map each). On an 8-bit grid ``(s, z)`` the affine map is a change of grid: ``a * s * (q - z) + b
= (a s) * (q - (z - b / (a s)))``. With ``s`` widened so that ``k = b / (a s)`` is a whole number
(``|k|`` rounded down, so the range only grows) the same integers ``q`` read with scale ``a s`` and
zero point ``z - k`` are ``a x + b`` exactly, and the convolution's zero padding (the zero
point) is 0 of ``a x + b``, as in the float model. The rewrite replaces the chain by one
DequantizeLinear with that grid: two roundings and two integer ops fewer. It is skipped where
``a <= 0``, where ``b`` is too small against the grid step to make ``k`` a whole number without
narrowing it, or where ``z - k`` leaves 0..255.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from sdk.graphs import drop_unused

logger = logging.getLogger("edgewise")

__all__ = ["absorb_affine"]


def _scalar(name: str, inits: dict[str, onnx.TensorProto], prod: dict[str, onnx.NodeProto]) -> float | None:
    """The value of a one-element constant: an initializer, or a DequantizeLinear of one."""
    if name in inits:
        v = numpy_helper.to_array(inits[name])
        return float(v.ravel()[0]) if v.size == 1 else None
    dq = prod.get(name)
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
        return None
    q, s = numpy_helper.to_array(inits[dq.input[0]]), numpy_helper.to_array(inits[dq.input[1]])
    z = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] else np.zeros(1)
    if q.size != 1 or s.size != 1:
        return None
    return float((q.astype(np.float64).ravel()[0] - float(z.ravel()[0])) * float(s.ravel()[0]))


def _only(cons: dict[str, list[onnx.NodeProto]], tensor: str, op: str) -> onnx.NodeProto | None:
    c = cons.get(tensor, [])
    return c[0] if len(c) == 1 and c[0].op_type == op else None


def _const_and_var(node: onnx.NodeProto, inits: dict, prod: dict) -> tuple[float, str] | None:
    """(the scalar constant, the other input) of a binary node with one constant input."""
    if len(node.input) != 2:
        return None
    for c, v in ((0, 1), (1, 0)):
        val = _scalar(node.input[c], inits, prod)
        if val is not None and _scalar(node.input[v], inits, prod) is None:
            return val, node.input[v]
    return None


def _chain(node: onnx.NodeProto, inits: dict, prod: dict, cons: dict, outputs: set[str]) -> dict[str, Any] | None:
    """The ``Q1 -> DQ1 -> Mul(a) -> Q2 -> DQ2 [-> Add(b) -> Q3 -> DQ3]`` chain through ``node`` (a Mul)."""
    cv = _const_and_var(node, inits, prod)
    if cv is None:
        return None
    a, x = cv
    dq1 = prod.get(x)
    q1 = prod.get(dq1.input[0]) if dq1 is not None and dq1.op_type == "DequantizeLinear" else None
    if dq1 is None or q1 is None or q1.op_type != "QuantizeLinear" or len(cons.get(q1.output[0], [])) != 1 \
            or len(cons.get(x, [])) != 1 or list(dq1.input[1:]) != list(q1.input[1:]):
        return None
    q2 = _only(cons, node.output[0], "QuantizeLinear")
    dq2 = _only(cons, q2.output[0], "DequantizeLinear") if q2 is not None else None
    if q2 is None or dq2 is None:
        return None
    drop: list[onnx.NodeProto] = [dq1, node, q2, dq2]
    b, last = 0.0, dq2
    add = _only(cons, dq2.output[0], "Add")
    cb = _const_and_var(add, inits, prod) if add is not None else None
    if add is not None and cb is not None:
        q3 = _only(cons, add.output[0], "QuantizeLinear")
        dq3 = _only(cons, q3.output[0], "DequantizeLinear") if q3 is not None else None
        if q3 is not None and dq3 is not None:
            b, last = cb[0], dq3
            drop += [add, q3, dq3]
    if any(o in outputs for n in drop[:-1] for o in n.output):
        return None
    return {"a": a, "b": b, "q1": q1, "last": last, "drop": drop}


def _requantize_biases(g: onnx.GraphProto, tensor: str, x_scale: float, inits: dict[str, onnx.TensorProto]) -> None:
    """The int32 biases of the convolutions reading ``tensor`` at ``x_scale * w_scale``: when
    onnxruntime fuses them into QLinearConv it takes the integers as they are, at that scale."""
    prod = {o: n for n in g.node for o in n.output}
    for n in g.node:
        if n.op_type != "Conv" or n.input[0] != tensor or len(n.input) < 3:
            continue
        bdq, wdq = prod.get(n.input[2]), prod.get(n.input[1])
        if bdq is None or wdq is None or bdq.op_type != "DequantizeLinear" or wdq.op_type != "DequantizeLinear" \
                or bdq.input[0] not in inits or wdq.input[1] not in inits:
            continue
        bias = numpy_helper.to_array(inits[bdq.input[0]]).astype(np.float64) * \
            numpy_helper.to_array(inits[bdq.input[1]]).astype(np.float64)
        old = numpy_helper.to_array(inits[bdq.input[1]])
        scale = (x_scale * numpy_helper.to_array(inits[wdq.input[1]]).astype(np.float64)).reshape(old.shape)
        q = np.clip(np.rint(bias / scale), -(2 ** 31), 2 ** 31 - 1).astype(np.int32)
        names = [f"{n.name}_bias_absorbed", f"{n.name}_bias_absorbed_scale"]
        for name, arr in zip(names, (q, scale.astype(np.float32)), strict=True):
            t = numpy_helper.from_array(arr, name)
            g.initializer.append(t)
            inits[name] = t
        bdq.input[0], bdq.input[1] = names
        if len(bdq.input) > 2 and bdq.input[2]:
            zero = numpy_helper.from_array(np.zeros(old.shape, np.int32), f"{n.name}_bias_absorbed_zero_point")
            g.initializer.append(zero)
            inits[zero.name] = zero
            bdq.input[2] = zero.name


def absorb_affine(qdq: onnx.ModelProto) -> list[str]:
    """Rewrite every ``Mul(a) [-> Add(b)]`` between 8-bit grids as one change of grid (see the
    module docstring), in place; returns the names of the Mul nodes absorbed."""
    g = qdq.graph
    inits = {t.name: t for t in g.initializer}
    done: list[str] = []
    outputs = {o.name for o in g.output}
    maps: tuple[dict, dict] | None = None      # producer / readers, rebuilt only after a rewrite
    for mul in [n for n in g.node if n.op_type == "Mul"]:
        if maps is None:
            cons: dict[str, list[onnx.NodeProto]] = {}
            for n in g.node:
                for t in n.input:
                    cons.setdefault(t, []).append(n)
            maps = {o: n for n in g.node for o in n.output}, cons
        prod, cons = maps
        ch = _chain(mul, inits, prod, cons, outputs)
        if ch is None:
            continue
        q1, a, b = ch["q1"], ch["a"], ch["b"]
        if q1.input[1] not in inits or len(q1.input) < 3 or q1.input[2] not in inits:
            continue
        s1 = float(numpy_helper.to_array(inits[q1.input[1]]).ravel()[0])
        zp = numpy_helper.to_array(inits[q1.input[2]])
        if a <= 0 or zp.dtype != np.uint8 or zp.size != 1 or s1 <= 0:
            continue
        z1 = int(zp.ravel()[0])
        k = int(np.trunc(b / (a * s1)))
        if b != 0.0 and k == 0:
            continue
        s_new = b / (a * k) if k else s1
        z_new = z1 - k
        if not 0 <= z_new <= 255:
            continue
        tag = mul.name
        add = [
            numpy_helper.from_array(np.array(s_new, np.float32), f"{tag}_absorbed_in_scale"),
            numpy_helper.from_array(np.array(a * s_new, np.float32), f"{tag}_absorbed_scale"),
            numpy_helper.from_array(np.array(z_new, np.uint8), f"{tag}_absorbed_zero_point"),
        ]
        g.initializer.extend(add)
        for t in add:
            inits[t.name] = t
        q1.input[1] = add[0].name
        dq = onnx.helper.make_node("DequantizeLinear", [q1.output[0], add[1].name, add[2].name],
                                   [ch["last"].output[0]], name=f"{tag}_absorbed_DequantizeLinear")
        at = list(g.node).index(ch["last"])
        g.node.insert(at, dq)
        for n in ch["drop"]:
            g.node.remove(n)
        _requantize_biases(g, dq.output[0], a * s_new, inits)
        done.append(tag)
        maps = None
    if done:
        drop_unused(qdq)      # the constants' DequantizeLinear nodes and the tensors nobody reads any more
        logger.info("absorbed %d scalar Mul/Add pairs into 8-bit grids", len(done))
    return done
