"""Running chosen nodes of a QDQ graph in float, for real (see :func:`keep_float`)."""
from __future__ import annotations

import logging
from collections.abc import Iterable

import onnx

from sdk.compress.qdq_refine import _inits

logger = logging.getLogger("edgewise")

__all__ = ["keep_float"]


def keep_float(qdq: onnx.ModelProto, float_model: onnx.ModelProto, nodes: Iterable[str]) -> list[str]:
    """Run ``nodes`` in float for real: their activation inputs bypass the Quantize/Dequantize
    pair (they read the float tensor) and their weights are the FP32 ones. Excluding a node in
    onnxruntime's quantizer is not enough: when its neighbours are quantized, its input still
    goes through a DequantizeLinear, and onnxruntime's load-time weight quantization then
    turns it into an integer conv again. Q/DQ nodes left without consumers are removed.
    Returns the nodes changed."""
    names = set(nodes)
    prod = {o: n for n in qdq.graph.node for o in n.output}
    inits = _inits(qdq)
    finits = _inits(float_model)
    fprod = {o: n for n in float_model.graph.node for o in n.output}
    changed: list[str] = []
    skipped: list[str] = []
    for n in qdq.graph.node:
        if n.name not in names:
            continue
        for k, t in enumerate(n.input):
            dq = prod.get(t)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            src = dq.input[0]
            if src in inits:                                   # a quantized weight or bias
                fname = src[:-len("_quantized")] if src.endswith("_quantized") else None
                if fname in finits:
                    # onnxruntime names a bias's DequantizeLinear output after the float bias
                    new = fname if fname not in prod else fname + "_float"
                    if new not in inits:
                        t = onnx.TensorProto()
                        t.CopyFrom(finits[fname])
                        t.name = new
                        qdq.graph.initializer.append(t)
                        inits[new] = t
                    n.input[k] = new
                continue
            q = prod.get(src)
            if q is None or q.op_type != "QuantizeLinear":
                continue
            if list(dq.input[1:]) != list(q.input[1:]):    # a change of grid (qdq_affine): not the same tensor
                skipped.append(n.name)
                break
            # onnxruntime's quantizer drops a Relu/Clip whose clamp the 8-bit grid does anyway, so
            # the float tensor behind a Q can lack the activation: bypass only where the tensor
            # comes from the same op as in the FP32 model
            here, there = prod.get(q.input[0]), fprod.get(q.input[0])
            same = (here is None and there is None) or (here is not None and there is not None
                                                       and here.op_type == there.op_type)
            if not same:
                skipped.append(n.name)
                break
            n.input[k] = q.input[0]
        else:
            changed.append(n.name)
    # drop Q/DQ nodes nobody reads any more
    while True:
        used = {t for n in qdq.graph.node for t in n.input} | {o.name for o in qdq.graph.output}
        dead = [n for n in qdq.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            qdq.graph.node.remove(n)
    used = {t for n in qdq.graph.node for t in n.input}
    for t in [t for t in qdq.graph.initializer if t.name not in used]:
        qdq.graph.initializer.remove(t)
    if skipped:
        logger.info("kept quantized (an activation was folded into their input grid): %s", ", ".join(skipped))
    return changed
