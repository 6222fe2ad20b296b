"""Per-operator rules of the channel-dependency analysis (:mod:`sdk.compress.graph_channels`).

Each rule reads one node and records, through :class:`~sdk.compress.channel_trace.ChannelTrace`,
how the channels of its outputs follow those of its inputs. A rule returns False when it does
not apply (its input carries no channel segments): the node then counts as not channel-aware,
and every channel tensor it touches is frozen (:func:`not_channel_aware`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from sdk.compress.channel_trace import ChannelTrace, Node

__all__ = ["RULES", "UNARY", "SPATIAL", "BINARY", "NORM", "not_channel_aware"]

# Element-wise unary ops: output channels == input channels, no parameters.
UNARY = {
    "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid", "HardSwish", "Elu", "Selu",
    "Softplus", "Softsign", "Abs", "Neg", "Exp", "Log", "Sqrt", "Identity", "Dropout", "Erf",
    "Gelu", "Mish", "Celu", "ThresholdedRelu", "Reciprocal", "Floor", "Ceil", "Round", "Sign",
    "Cos", "Sin", "Not", "IsNaN", "IsInf",
}
# Ops that only move data along spatial axes: channel-transparent for input 0.
SPATIAL = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool",
           "GlobalLpPool", "Upsample", "Resize"}
# Element-wise binary (broadcasting) ops.
BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow", "PRelu"}
# Per-channel normalisation: inputs 1.. are [C] parameters sliced with the channels.
NORM = {"BatchNormalization": (1, 2, 3, 4), "InstanceNormalization": (1, 2)}

Rule = Callable[[ChannelTrace, Node], bool]


def _on_channels(rule: Rule) -> Rule:
    """The rule applies only when input 0 carries channel segments."""
    def guarded(t: ChannelTrace, n: Node) -> bool:
        return bool(n.ins) and n.ins[0] in t.segs and rule(t, n)
    guarded.__doc__ = rule.__doc__
    return guarded


def conv(t: ChannelTrace, n: Node) -> bool:
    """A plain Conv starts a fresh group; a depthwise one follows its input's channels."""
    x, w = n.ins[0], n.ins[1]
    group = int(n.attr("group", 1))
    if w not in t.inits:
        return t.opaque([x], n.outs, f"{n.name}: weight is not an initializer")
    wshape = list(t.inits[w].dims)
    cin = t.channels_of(x)
    if group == 1:
        if x in t.segs:
            t.slice_param(n.name, 1, 1, t.segs[x])
        t.produce(n.name, n.outs[0], wshape[0], len(wshape))
    elif cin is not None and group == cin == wshape[0] and wshape[1] == 1 and x in t.segs:
        t.passthrough(x, n.outs[0], len(wshape))
        t.slice_param(n.name, 1, 0, t.segs[x])
        if len(n.ins) > 2 and n.ins[2]:
            t.slice_param(n.name, 2, 0, t.segs[x])
        if len(t.segs[x]) == 1:
            t.group_attr[n.name] = t.segs[x][0][0]
        else:  # a depthwise conv after a Concat: group = sum of parts, keep it simple
            t.freeze(x, f"{n.name}: depthwise conv over a concatenation")
        if n.name in t.exclude:
            t.freeze(x, f"{n.name}: excluded")
    else:
        t.opaque([x], [n.outs[0]], f"{n.name}: grouped conv (group={group})")
    return True


@_on_channels
def norm(t: ChannelTrace, n: Node) -> bool:
    x = n.ins[0]
    if any(i not in t.inits for i in n.ins[1:] if i):
        return t.opaque([x], n.outs, f"{n.name}: {n.op} parameters are not initializers")
    for k in NORM[n.op]:
        if k < len(n.ins) and n.ins[k]:
            t.slice_param(n.name, k, 0, t.segs[x])
    t.passthrough(x, n.outs[0])
    s = t.segs[x]
    if len(s) == 1 and t.producer_node.get(s[0][0]) and n.op == "BatchNormalization":
        t.bn_of.setdefault(t.producer_node[s[0][0]], n.name)
    return t.opaque([], n.outs[1:], f"{n.name}: extra output")


def unary(t: ChannelTrace, n: Node) -> bool:
    if n.ins and n.ins[0] in t.segs:
        t.passthrough(n.ins[0], n.outs[0])
        return t.opaque([], n.outs[1:], f"{n.name}: extra output")
    return t.opaque([], n.outs, f"{n.name}: input without channel info")


def spatial(t: ChannelTrace, n: Node) -> bool:
    """Pooling and resizing: transparent unless a Resize touches the channel axis."""
    x = n.ins[0]
    ok = x in t.segs
    if ok and n.op == "Resize" and len(n.ins) > 3 and n.ins[3]:
        ok = False
        t.freeze(x, f"{n.name}: Resize with explicit sizes")
    if ok and n.op in ("Resize", "Upsample"):
        sc = n.ins[2] if n.op == "Resize" and len(n.ins) > 2 else (n.ins[1] if len(n.ins) > 1 else "")
        arr = t.const(sc) if sc else None
        if arr is not None:
            if arr.size >= 2 and float(arr[1]) != 1.0:
                ok = False
                t.freeze(x, f"{n.name}: resizes the channel axis")
        elif sc:
            ok = False
            t.freeze(x, f"{n.name}: scales not constant")
    if ok:
        t.passthrough(x, n.outs[0])
        return True
    return t.opaque([], n.outs, f"{n.name}: not channel-transparent")


def elementwise(t: ChannelTrace, n: Node) -> bool:
    """Broadcasting binary ops: full operands unite their groups; per-channel constants are sliced."""
    ins = n.ins
    tens = [i for i in ins if i and i not in t.inits]
    consts = [(k, i) for k, i in enumerate(ins) if i in t.inits]
    r_out = max((t.rank_of(i) or 0) for i in ins if i) if ins else 0
    full = []
    ok = n.op != "Where"
    for x in tens:
        r = t.rank_of(x)
        c = t.channels_of(x)
        if r is None:
            ok = False
            continue
        if r < r_out - 1 or (r_out - r) > 1:
            continue  # no channel axis after broadcasting
        if r == r_out and c == 1:
            continue  # broadcast along channels
        if r == r_out and x in t.segs:
            full.append(x)
        else:
            ok = False
    # constants: scalar / size-1 on the channel axis broadcast; per-channel ones get sliced
    const_slices = []
    for k, cname in consts:
        cs = list(t.inits[cname].dims)
        ax = 1 - (r_out - len(cs))
        if ax < 0 or cs[ax] == 1:
            continue
        const_slices.append((k, ax))
    if ok and full:
        base = t.segs[full[0]]
        for x in full[1:]:
            if not t.unify(base, t.segs[x], f"{n.name}: {n.op} operands have different channel layouts"):
                ok = False
        if ok and const_slices and len(base) == 1:
            for k, ax in const_slices:
                if list(t.inits[ins[k]].dims)[ax] != base[0][1]:
                    ok = False
                    break
                t.slice_param(n.name, k, ax, base)
        elif const_slices:
            ok = False
        if ok:
            t.segs[n.outs[0]] = list(base)
            t.rank[n.outs[0]] = r_out
            return True
    return t.opaque(tens, n.outs, f"{n.name}: {n.op} not understood")


def concat(t: ChannelTrace, n: Node) -> bool:
    """Along channels the segments concatenate; along another axis the inputs must agree."""
    axis = int(n.attr("axis", 1))
    r = t.rank_of(n.data_in[0]) if n.data_in else None
    if r is not None and axis < 0:
        axis += r
    if len(n.data_in) == len([i for i in n.ins if i]) and all(x in t.segs for x in n.data_in):
        if axis == 1:
            t.segs[n.outs[0]] = [s for x in n.data_in for s in t.segs[x]]
            t.rank[n.outs[0]] = r or 4
            return True
        base = t.segs[n.data_in[0]]
        if all(t.unify(base, t.segs[x], f"{n.name}: Concat along axis {axis}") for x in n.data_in[1:]):
            t.passthrough(n.data_in[0], n.outs[0])
            return True
    return t.opaque(n.data_in, n.outs, f"{n.name}: Concat with constants or unknown inputs",
                    f"{n.name}: Concat not understood")


@_on_channels
def slice_(t: ChannelTrace, n: Node) -> bool:
    x, ins = n.ins[0], n.ins
    r = t.rank_of(x) or 4
    axes = None
    if len(ins) > 3 and ins[3]:
        axes = t.const(ins[3]).tolist() if ins[3] in t.inits else None
    elif len(ins) > 1 and ins[1] in t.inits:
        axes = list(range(int(np.asarray(t.const(ins[1])).size)))
    if axes is not None and all((a + r if a < 0 else a) != 1 for a in axes):
        t.passthrough(x, n.outs[0])
        return True
    return t.opaque([x], [n.outs[0]], f"{n.name}: Slice along channels")


@_on_channels
def split(t: ChannelTrace, n: Node) -> bool:
    x = n.ins[0]
    r = t.rank_of(x) or 4
    axis = int(n.attr("axis", 0))
    if (axis + r if axis < 0 else axis) != 1:
        for o in n.outs:
            t.passthrough(x, o)
        return True
    return t.opaque([x], n.outs, f"{n.name}: Split along channels")


@_on_channels
def pad(t: ChannelTrace, n: Node) -> bool:
    x, ins = n.ins[0], n.ins
    pads = None
    if len(ins) > 1 and ins[1] in t.inits:
        pads = t.const(ins[1]).tolist()
    elif n.attr("pads") is not None:
        pads = list(n.attr("pads"))
    r = t.rank_of(x) or 4
    if pads is not None and len(pads) == 2 * r and pads[1] == 0 and pads[1 + r] == 0 \
            and not (len(ins) > 3 and ins[3]):
        t.passthrough(x, n.outs[0])
        return True
    return t.opaque([x], [n.outs[0]], f"{n.name}: Pad along channels or non-constant pads",
                    f"{n.name}: Pad not understood")


@_on_channels
def flatten(t: ChannelTrace, n: Node) -> bool:
    x = n.ins[0]
    s = t.shapes.get(x)
    if int(n.attr("axis", 1)) == 1 and s and len(s) >= 2 and all(d == 1 for d in s[2:]):
        t.passthrough(x, n.outs[0], 2)
        return True
    return t.opaque([x], [n.outs[0]], f"{n.name}: Flatten of a non-1x1 feature map", f"{n.name}: Flatten")


@_on_channels
def matmul(t: ChannelTrace, n: Node) -> bool:
    """Gemm / MatMul on an [N, C] tensor with constant weights: the weight rows follow C."""
    a, b = n.ins[0], n.ins[1]
    ok = b in t.inits and (t.rank_of(a) == 2)
    if n.op == "Gemm":
        ok = ok and int(n.attr("transA", 0)) == 0
        axis = 1 if int(n.attr("transB", 0)) == 1 else 0
    else:
        axis = 0
        ok = ok and len(t.inits[b].dims) == 2 if b in t.inits else False
    if ok:
        t.slice_param(n.name, 1, axis, t.segs[a])
    else:
        t.freeze(a, f"{n.name}: {n.op} input not a 2D [N, C] tensor with constant weights")
    return t.opaque([], n.outs, f"{n.name}: {n.op} output (not pruned)")


def not_channel_aware(t: ChannelTrace, n: Node) -> bool:
    """Anything else: every channel tensor it touches is frozen."""
    return t.opaque(n.data_in, n.outs, f"{n.name}: {n.op} is not channel-aware", f"{n.name}: {n.op} output")


RULES: dict[str, Rule] = {
    "Conv": conv, **{op: norm for op in NORM}, **{op: unary for op in UNARY}, **{op: spatial for op in SPATIAL},
    **{op: elementwise for op in BINARY | {"Where"}}, "Concat": concat, "Slice": slice_, "Split": split,
    "Pad": pad, "Flatten": flatten, "Gemm": matmul, "MatMul": matmul,
}
