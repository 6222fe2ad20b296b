"""Float reference from a dynamically quantized model: undo ``quantize_dynamic``.

Many published transformer exports ship only their dynamic-INT8 files (onnxruntime's
``quantize_dynamic``: ``DynamicQuantizeLinear`` -> ``MatMulInteger`` / ``ConvInteger`` ->
``Cast`` -> ``Mul`` by the two scales). :func:`dequantize_dynamic` rewrites each such chain
into a float ``MatMul`` / ``Conv`` whose weight is ``(W_q - zero_point) * scale``, in every
graph (``If`` branches of a merged decoder too), and drops what is left unused.

What the result is, exactly: an FP32 model whose activations are float and whose weights
lie on the int8 grid of the shipped file. It is **not** the original FP32 export (each
weight differs from it by up to half a quantization step); it is the float model the INT8
file approximates most closely. Re-quantizing it dynamically, per tensor, gives back the
shipped weights, so against this reference that candidate shows only the error of quantizing
activations; static INT8 (activation ranges from calibration data), per-channel INT8 and INT4
(new block scales) re-quantize the weights for real.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sdk.compress.graph_prep import load_model, save_model
from sdk.errors import CompressionError
from sdk.graphs import (
    drop_unused,
    initializer_map,
    iter_graphs,
    iter_scoped,
    local_uses,
)

logger = logging.getLogger("edgewise")

__all__ = ["dequantize_dynamic", "dequantize_file"]

_INTEGER_OPS = {"MatMulInteger": "MatMul", "ConvInteger": "Conv"}


def _float_weight(wq: np.ndarray, zp: np.ndarray | None, scale: np.ndarray, conv: bool) -> np.ndarray:
    s = np.asarray(scale, np.float32)
    z = np.zeros((), np.float32) if zp is None else np.asarray(zp, np.float32)
    if conv:                          # per output channel: axis 0 of [O, C, k...]
        shape = (-1,) + (1,) * (wq.ndim - 1)
        s = s.reshape(shape) if s.size > 1 else s
        z = z.reshape(shape) if z.size > 1 else z
    return ((wq.astype(np.float32) - z) * s).astype(np.float32)


def dequantize_dynamic(model: onnx.ModelProto) -> int:
    """Rewrite every ``MatMulInteger`` / ``ConvInteger`` chain with a constant weight into
    float, and every ``DequantizeLinear`` of a constant weight (or of a ``Gather`` from one:
    a quantized embedding table) into a float initializer, in place; returns how many.
    Chains it does not recognise are left as they are."""
    inits = initializer_map(model)
    done = 0
    made: dict[tuple[str, ...], str] = {}   # (weight, zero point, scale) -> float initializer name
    # innermost graphs first: rewriting an outer node list copies the subgraphs already done
    for g, producer in reversed(list(iter_scoped(model.graph))):
        uses = local_uses(g)
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        replace: dict[int, onnx.NodeProto | None] = {}
        for node in g.node:
            if node.op_type == "DequantizeLinear":
                new = _fold_dequantize(node, producer, inits, made)
                if new is not None:
                    replace[id(node)] = new
                    done += 1
                continue
            if node.op_type not in _INTEGER_OPS:
                continue
            chain = _chain(node, producer, consumers, inits, uses)
            if chain is None:
                logger.info("dequantize: %s %s is not a dynamic-quantization chain; kept", node.op_type, node.name)
                continue
            x, wname, zname, sname, cast, mul = chain
            conv = node.op_type == "ConvInteger"
            new = helper.make_node(_INTEGER_OPS[node.op_type], [x, _float_init(wname, zname, sname, conv, inits, made)],
                                   [mul.output[0]], name=node.name.removesuffix("_quant"))
            if conv:
                new.attribute.extend(node.attribute)
            replace[id(node)] = new
            replace[id(cast)] = replace[id(mul)] = None
            done += 1
        if replace:
            nodes = [replace.get(id(n), n) for n in g.node]
            del g.node[:]
            g.node.extend(n for n in nodes if n is not None)
    if done:
        drop_unused(model)
    return done


def _float_init(wname: str, zname: str | None, sname: str, conv: bool, inits, made) -> str:
    """Name of the float copy of a quantized initializer (made once, next to the original)."""
    key = (wname, zname or "", sname)
    if key not in made:
        wq = numpy_helper.to_array(inits[wname][1])
        zp = numpy_helper.to_array(inits[zname][1]) if zname else None
        w = _float_weight(wq, zp, numpy_helper.to_array(inits[sname][1]), conv)
        name = _fresh(wname.removesuffix("_quantized") if wname.endswith("_quantized") else wname + "_float", inits)
        owner = inits[wname][0]
        t = numpy_helper.from_array(w, name)
        owner.initializer.append(t)
        inits[name] = (owner, t)
        made[key] = name
    return made[key]


def _fold_dequantize(node, producer, inits, made) -> onnx.NodeProto | None:
    """A float stand-in for ``DequantizeLinear`` of a constant (Identity of the float copy) or
    of ``Gather`` / ``Transpose`` of one (the same op on the float copy); None otherwise."""
    if len(node.input) < 2 or node.input[1] not in inits or any(a.name == "axis" for a in node.attribute):
        return None
    z = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if z is not None and z not in inits:
        return None
    src = node.input[0]
    if src in inits:
        return helper.make_node("Identity", [_float_init(src, z, node.input[1], False, inits, made)],
                                [node.output[0]], name=node.name + "_float")
    moved = producer.get(src)    # per-tensor dequantization commutes with gathering and transposing
    if moved is None or moved.op_type not in ("Gather", "Transpose") or moved.input[0] not in inits:
        return None
    table = _float_init(moved.input[0], z, node.input[1], False, inits, made)
    new = helper.make_node(moved.op_type, [table, *moved.input[1:]], [node.output[0]], name=moved.name + "_float")
    new.attribute.extend(moved.attribute)
    return new


def _chain(node, producer, consumers, inits, uses):
    """(x, weight, weight zero point or None, weight scale, cast, mul) of one chain, or None."""
    if len(node.input) < 2 or node.input[1] not in inits:
        return None
    dql = producer.get(node.input[0])
    if dql is None or dql.op_type != "DynamicQuantizeLinear":
        return None
    wzp = node.input[3] if len(node.input) > 3 and node.input[3] else None
    if wzp is not None and wzp not in inits:
        return None
    after = consumers.get(node.output[0], [])
    if len(after) != 1 or after[0].op_type != "Cast" or uses[node.output[0]] != 1:
        return None
    cast = after[0]
    after = consumers.get(cast.output[0], [])
    if len(after) != 1 or after[0].op_type != "Mul" or uses[cast.output[0]] != 1:
        return None
    mul = after[0]
    other = [i for i in mul.input if i != cast.output[0]]
    scales = producer.get(other[0]) if len(other) == 1 else None
    if scales is None or scales.op_type != "Mul" or dql.output[1] not in scales.input:
        return None
    wscale = [i for i in scales.input if i != dql.output[1]]
    if len(wscale) != 1 or wscale[0] not in inits:
        return None
    return dql.input[0], node.input[1], wzp, wscale[0], cast, mul


def _fresh(name: str, taken) -> str:
    out, k = name, 0
    while out in taken:
        k += 1
        out = f"{name}_{k}"
    return out


def dequantize_file(model_in: str | Path, model_out: str | Path) -> dict[str, int]:
    """:func:`dequantize_dynamic` from file to file; CompressionError when nothing was dynamic INT8."""
    model = load_model(model_in, check=False)
    before = sum(1 for g in iter_graphs(model.graph) for n in g.node if n.op_type in _INTEGER_OPS)
    done = dequantize_dynamic(model)
    if not done:
        raise CompressionError(f"{Path(model_in).name}: no MatMulInteger/ConvInteger chain of onnxruntime's dynamic "
                               f"quantization found ({before} integer node(s)); expected a quantize_dynamic output")
    left = sum(1 for g in iter_graphs(model.graph) for n in g.node if n.op_type in _INTEGER_OPS)
    save_model(model, model_out)
    logger.info("dequantize: %d integer node(s) -> float (%d left)", done, left)
    return {"dequantized": done, "integer_left": left}


if __name__ == "__main__":     # python -m sdk.compress.dequantize IN_quantized.onnx OUT.onnx
    import sys

    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m sdk.compress.dequantize IN_quantized.onnx OUT.onnx")
    print(dequantize_file(sys.argv[1], sys.argv[2]))
