"""SiLU -> ReLU in an ONNX graph, so that INT8 activations pay on CPU.

onnxruntime's CPU EP folds a ReLU into the requantization of the integer convolution before
it (the output grid simply starts at zero), but it runs an INT8 SiLU, ``x * sigmoid(x)``, as
two more kernels: ``QLinearSigmoid`` (a byte lookup) and ``QLinearMul``. On YOLOX-nano those
two cost more than the float graph's fused ``QuickGelu`` and eat the gain of the integer
convolutions (per-op profile, 1 thread, AVX-512/AMX Xeon: QLinearConv 8.4 ms against Conv 12.5
ms, but QLinearSigmoid + QLinearMul 7.9 ms against QuickGelu 4.6 ms). The same network with
ReLU runs its INT8 graph as little more than a chain of QLinearConvs.

Swapping the activation changes what the network computes, so the swapped graph is useless
until it is distilled back onto the original (:mod:`sdk.compress.relu_distill`) — the route
EfficientNet-Lite and the NPU ports of the YOLO family take for integer hardware.
"""
from __future__ import annotations

import onnx
from onnx import helper

__all__ = ["silu_pairs", "swap_silu_for_relu"]


def silu_pairs(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, onnx.NodeProto]]:
    """Every ``(Sigmoid, Mul)`` pair computing ``Mul(x, Sigmoid(x))`` whose Sigmoid output
    only that Mul reads (and is not a graph output)."""
    g = model.graph
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    producer = {o: n for n in g.node for o in n.output}
    outputs = {o.name for o in g.output}
    pairs = []
    for mul in g.node:
        if mul.op_type != "Mul" or len(mul.input) != 2:
            continue
        for x, s in (tuple(mul.input), tuple(reversed(mul.input))):
            sig = producer.get(s)
            if sig is not None and sig.op_type == "Sigmoid" and sig.input[0] == x and readers.get(s) == [mul] \
                    and s not in outputs:
                pairs.append((sig, mul))
                break
    return pairs


def swap_silu_for_relu(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` with every SiLU (:func:`silu_pairs`) replaced by one ``Relu`` that
    writes the Mul's output tensor (so downstream names are unchanged); returns it and the
    names of the swapped tensors."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    pairs = silu_pairs(out)
    drop = {id(sig) for sig, _ in pairs}
    relu_for = {id(mul): helper.make_node("Relu", [next(i for i in mul.input if i != sig.output[0])],
                                          [mul.output[0]], name=(mul.name or mul.output[0]) + "_relu")
                for sig, mul in pairs}
    nodes = [relu_for.get(id(n), n) for n in out.graph.node if id(n) not in drop]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out, [mul.output[0] for _, mul in pairs]
