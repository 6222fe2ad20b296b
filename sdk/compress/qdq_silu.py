"""SiLU in float between integer convolutions, as one fused node.

On onnxruntime's CPU EP an INT8 SiLU runs as ``QLinearSigmoid`` + ``QLinearMul``, which on
YOLOX-nano cost more than the float graph's fused ``QuickGelu``. Left in float inside a QDQ
graph (``Sigmoid`` and ``Mul`` not quantized) it is no better: onnxruntime gives each reader of
a ``DequantizeLinear`` its own copy, so ``Mul(x, Sigmoid(x))`` no longer reads one ``x`` and
its QuickGelu fusion does not match. :func:`fuse_silu` writes ``com.microsoft.QuickGelu``
(``x * sigmoid(alpha * x)``, alpha 1) in place of every float ``Mul(x, Sigmoid(x))``, so the
graph runs ``QLinearConv -> DequantizeLinear -> QuickGelu -> QuantizeLinear -> QLinearConv``.
"""
from __future__ import annotations

import onnx
from onnx import helper

__all__ = ["fuse_silu"]


def fuse_silu(model: onnx.ModelProto) -> int:
    """Replace every ``Mul(x, Sigmoid(x))`` whose Sigmoid output nobody else reads by a
    QuickGelu node (in place); returns how many."""
    g = model.graph
    cons: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for t in n.input:
            cons.setdefault(t, []).append(n)
    prod = {o: n for n in g.node for o in n.output}
    outputs = {o.name for o in g.output}
    fused = 0
    for mul in [n for n in g.node if n.op_type == "Mul" and len(n.input) == 2]:
        for a, b in (mul.input, reversed(mul.input)):
            sig = prod.get(b)
            if sig is None or sig.op_type != "Sigmoid" or sig.input[0] != a:
                continue
            if cons.get(b, []) != [mul] or b in outputs:
                continue
            node = helper.make_node("QuickGelu", [a], [mul.output[0]], name=mul.name + "_silu",
                                    domain="com.microsoft", alpha=1.0)
            idx = list(g.node).index(mul)
            g.node.remove(mul)
            g.node.insert(idx, node)
            g.node.remove(sig)
            fused += 1
            break
    if fused and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return fused
