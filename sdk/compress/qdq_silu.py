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
    from sdk.compress.relu_swap import silu_pairs

    g = model.graph
    pairs = silu_pairs(model)
    for sig, mul in pairs:
        x = next(i for i in mul.input if i != sig.output[0])
        node = helper.make_node("QuickGelu", [x], [mul.output[0]], name=mul.name + "_silu",
                                domain="com.microsoft", alpha=1.0)
        idx = list(g.node).index(mul)
        g.node.remove(mul)
        g.node.insert(idx, node)
        g.node.remove(sig)
    if pairs and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(pairs)
