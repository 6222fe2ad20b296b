"""Channel-dependency analysis of an ONNX graph, for structured channel pruning.

Every tensor with a channel axis (axis 1 of NCHW / NC tensors) is described by a list of
*segments* ``[(group_id, length), ...]``: its channels are the concatenation of channel
spaces ("groups"). A Conv output starts a fresh group; channel-transparent ops (activations,
BatchNormalization, pooling, Resize, depthwise Conv) pass segments through; Concat along
the channel axis concatenates them; an element-wise Add/Mul between two full tensors
unites their groups (union-find), so the operands of a residual are pruned identically.
Anything the analysis does not understand touching a tensor (Reshape, Transpose, a
Slice/Split along channels, a graph output, an unknown op) *freezes* every group in it.

The result lists, for each group: the Convs that produce it (their output filters may be
removed), the parameters to slice along the channel axis (BN, depthwise Conv, per-channel
constants) and the consumers whose *input* channels must follow (Conv ``W[:, keep]``,
Gemm/MatMul columns). :mod:`sdk.compress.prune_channels` turns this into a smaller graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["ChannelGroup", "ChannelAnalysis", "analyze_channels"]

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


@dataclass
class ChannelGroup:
    """One channel space, after union-find. ``importance`` is filled by the pruner."""

    gid: int
    size: int
    producers: list[str] = field(default_factory=list)          # Conv node names (output filters)
    frozen_reasons: list[str] = field(default_factory=list)

    @property
    def frozen(self) -> bool:
        return bool(self.frozen_reasons)


@dataclass
class ChannelAnalysis:
    """What :func:`analyze_channels` found.

    ``slices`` maps ``(node_name, input_index)`` to a list of ``(axis, segments)``: the
    initializer fed there must be indexed along ``axis`` with the kept channels of
    ``segments``. ``group_attr`` lists depthwise Convs whose ``group`` attribute follows a
    group's size.
    """

    groups: dict[int, ChannelGroup]
    tensor_segments: dict[str, list[tuple[int, int]]]
    slices: dict[tuple[str, int], list[tuple[int, list[tuple[int, int]]]]]
    group_attr: dict[str, int]                                   # node name -> gid
    bn_of_producer: dict[str, str]                               # conv name -> BN node name

    def prunable(self) -> list[ChannelGroup]:
        return [g for g in self.groups.values() if not g.frozen and g.producers]


class _UF:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)
        return min(ra, rb)


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - shape info is a help, not a requirement
        inferred = model
    out: dict[str, list[int | None]] = {}
    g = inferred.graph
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    for init in g.initializer:
        out[init.name] = list(init.dims)
    return out


def analyze_channels(model: onnx.ModelProto, exclude: set[str] | frozenset[str] = frozenset()
                     ) -> ChannelAnalysis:
    """Build channel groups for ``model`` (not modified). Convs named in ``exclude`` are frozen."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    shapes = _shapes(model)
    uf = _UF()
    size: dict[int, int] = {}
    producers: dict[int, list[str]] = {}
    frozen: dict[int, list[str]] = {}
    segs: dict[str, list[tuple[int, int]]] = {}
    rank: dict[str, int] = {}
    slices: dict[tuple[str, int], list[tuple[int, list[tuple[int, int]]]]] = {}
    group_attr: dict[str, int] = {}
    bn_of: dict[str, str] = {}
    producer_node: dict[int, str] = {}

    def new_group(n: int, reason: str | None = None) -> int:
        gid = uf.new()
        size[gid] = n
        if reason:
            frozen.setdefault(gid, []).append(reason)
        return gid

    def freeze(tensor: str, reason: str) -> None:
        for gid, _ in segs.get(tensor, []):
            frozen.setdefault(gid, []).append(reason)

    def channels_of(tensor: str) -> int | None:
        if tensor in segs:
            return sum(n for _, n in segs[tensor])
        s = shapes.get(tensor)
        return s[1] if s and len(s) >= 2 else None

    def rank_of(tensor: str) -> int | None:
        if tensor in rank:
            return rank[tensor]
        s = shapes.get(tensor)
        return len(s) if s is not None else None

    def fresh(tensor: str, reason: str) -> None:
        """Give an output we do not understand its own frozen group (when it has channels)."""
        r = rank_of(tensor)
        c = channels_of(tensor)
        if r is not None and r >= 2 and c:
            segs[tensor] = [(new_group(c, reason), c)]
            rank[tensor] = r

    def passthrough(src: str, dst: str, r: int | None = None) -> None:
        if src in segs:
            segs[dst] = list(segs[src])
            rank[dst] = r if r is not None else rank_of(src) or 4

    def unify(a: list[tuple[int, int]], b: list[tuple[int, int]], why: str) -> bool:
        if [n for _, n in a] != [n for _, n in b]:
            for gid, _ in a + b:
                frozen.setdefault(gid, []).append(why)
            return False
        for (ga, _), (gb, _) in zip(a, b):
            root = uf.union(ga, gb)
            for other in (ga, gb):
                if other != root and other in frozen:
                    frozen.setdefault(root, []).extend(frozen.pop(other))
        return True

    for inp in g.input:
        if inp.name in inits:
            continue
        fresh(inp.name, f"graph input {inp.name!r}")

    for node in g.node:
        name = node.name or (node.output[0] if node.output else "")
        op = node.op_type
        ins = [i for i in node.input]
        data_in = [i for i in ins if i and i not in inits]
        outs = [o for o in node.output if o]

        if op == "Conv":
            x, w = ins[0], ins[1]
            group = int(_attr(node, "group", 1))
            if w not in inits:
                freeze(x, f"{name}: weight is not an initializer")
                for o in outs:
                    fresh(o, f"{name}: weight is not an initializer")
                continue
            wshape = list(inits[w].dims)
            cin = channels_of(x)
            if group == 1:
                if x in segs:
                    slices.setdefault((name, 1), []).append((1, segs[x]))
                gid = new_group(wshape[0])
                producers.setdefault(gid, []).append(name)
                producer_node[gid] = name
                if name in exclude:
                    frozen.setdefault(gid, []).append(f"{name}: excluded")
                segs[outs[0]] = [(gid, wshape[0])]
                rank[outs[0]] = len(wshape)
            elif cin is not None and group == cin == wshape[0] and wshape[1] == 1 and x in segs:
                # depthwise: channel-transparent, its filters follow the input's channels
                passthrough(x, outs[0], len(wshape))
                slices.setdefault((name, 1), []).append((0, segs[x]))
                if len(ins) > 2 and ins[2]:
                    slices.setdefault((name, 2), []).append((0, segs[x]))
                if len(segs[x]) == 1:
                    group_attr[name] = segs[x][0][0]
                else:  # a depthwise conv after a Concat: group = sum of parts, keep it simple
                    freeze(x, f"{name}: depthwise conv over a concatenation")
                if name in exclude:
                    freeze(x, f"{name}: excluded")
            else:
                freeze(x, f"{name}: grouped conv (group={group})")
                fresh(outs[0], f"{name}: grouped conv (group={group})")
            continue

        if op in NORM and ins and ins[0] in segs:
            if any(i not in inits for i in ins[1:] if i):
                freeze(ins[0], f"{name}: {op} parameters are not initializers")
                for o in outs:
                    fresh(o, f"{name}: {op} parameters are not initializers")
                continue
            for k in NORM[op]:
                if k < len(ins) and ins[k]:
                    slices.setdefault((name, k), []).append((0, segs[ins[0]]))
            passthrough(ins[0], outs[0])
            s = segs[ins[0]]
            if len(s) == 1 and producer_node.get(s[0][0]) and op == "BatchNormalization":
                bn_of.setdefault(producer_node[s[0][0]], name)
            for o in outs[1:]:
                fresh(o, f"{name}: extra output")
            continue

        if op in UNARY:
            if ins and ins[0] in segs:
                passthrough(ins[0], outs[0])
                for o in outs[1:]:
                    fresh(o, f"{name}: extra output")
            else:
                for o in outs:
                    fresh(o, f"{name}: input without channel info")
            continue

        if op in SPATIAL:
            x = ins[0]
            ok = x in segs
            if ok and op == "Resize" and len(ins) > 3 and ins[3]:
                ok = False
                freeze(x, f"{name}: Resize with explicit sizes")
            if ok and op in ("Resize", "Upsample"):
                sc = ins[2] if op == "Resize" and len(ins) > 2 else (ins[1] if len(ins) > 1 else "")
                if sc and sc in inits:
                    arr = numpy_helper.to_array(inits[sc])
                    if arr.size >= 2 and float(arr[1]) != 1.0:
                        ok = False
                        freeze(x, f"{name}: resizes the channel axis")
                elif sc:
                    ok = False
                    freeze(x, f"{name}: scales not constant")
            if ok:
                passthrough(x, outs[0])
            else:
                for o in outs:
                    fresh(o, f"{name}: not channel-transparent")
            continue

        if op in BINARY or op in ("Where",):
            tens = [i for i in ins if i and i not in inits]
            consts = [(k, i) for k, i in enumerate(ins) if i in inits]
            r_out = max((rank_of(i) or 0) for i in ins if i) if ins else 0
            full = []
            ok = op != "Where"
            for t in tens:
                r = rank_of(t)
                c = channels_of(t)
                if r is None:
                    ok = False
                    continue
                if r < r_out - 1 or (r_out - r) > 1:
                    continue  # no channel axis after broadcasting
                if r == r_out and c == 1:
                    continue  # broadcast along channels
                if r == r_out and t in segs:
                    full.append(t)
                else:
                    ok = False
            # constants: scalar / size-1 on the channel axis broadcast; per-channel ones get sliced
            const_slices = []
            for k, cname in consts:
                cs = list(inits[cname].dims)
                ax = 1 - (r_out - len(cs))
                if ax < 0 or cs[ax] == 1:
                    continue
                const_slices.append((k, ax))
            if ok and full:
                base = segs[full[0]]
                for t in full[1:]:
                    if not unify(base, segs[t], f"{name}: {op} operands have different channel layouts"):
                        ok = False
                if ok and const_slices and len(base) == 1:
                    for k, ax in const_slices:
                        if list(inits[ins[k]].dims)[ax] != base[0][1]:
                            ok = False
                            break
                        slices.setdefault((name, k), []).append((ax, base))
                elif const_slices:
                    ok = False
                if ok:
                    segs[outs[0]] = list(base)
                    rank[outs[0]] = r_out
                    continue
            for t in tens:
                freeze(t, f"{name}: {op} not understood")
            for o in outs:
                fresh(o, f"{name}: {op} not understood")
            continue

        if op == "Concat":
            axis = int(_attr(node, "axis", 1))
            r = rank_of(data_in[0]) if data_in else None
            if r is not None and axis < 0:
                axis += r
            if len(data_in) == len([i for i in ins if i]) and all(t in segs for t in data_in):
                if axis == 1:
                    out_segs: list[tuple[int, int]] = []
                    for t in data_in:
                        out_segs.extend(segs[t])
                    segs[outs[0]] = out_segs
                    rank[outs[0]] = r or 4
                    continue
                base = segs[data_in[0]]
                if all(unify(base, segs[t], f"{name}: Concat along axis {axis}") for t in data_in[1:]):
                    passthrough(data_in[0], outs[0])
                    continue
            for t in data_in:
                freeze(t, f"{name}: Concat with constants or unknown inputs")
            for o in outs:
                fresh(o, f"{name}: Concat not understood")
            continue

        if op == "Slice" and ins and ins[0] in segs:
            r = rank_of(ins[0]) or 4
            axes = None
            if len(ins) > 3 and ins[3]:
                axes = numpy_helper.to_array(inits[ins[3]]).tolist() if ins[3] in inits else None
            elif len(ins) > 1 and ins[1] in inits:
                axes = list(range(int(np.asarray(numpy_helper.to_array(inits[ins[1]])).size)))
            if axes is not None and all((a + r if a < 0 else a) != 1 for a in axes):
                passthrough(ins[0], outs[0])
                continue
            freeze(ins[0], f"{name}: Slice along channels")
            fresh(outs[0], f"{name}: Slice along channels")
            continue

        if op == "Split" and ins and ins[0] in segs:
            r = rank_of(ins[0]) or 4
            axis = int(_attr(node, "axis", 0))
            axis = axis + r if axis < 0 else axis
            if axis != 1:
                for o in outs:
                    passthrough(ins[0], o)
                continue
            freeze(ins[0], f"{name}: Split along channels")
            for o in outs:
                fresh(o, f"{name}: Split along channels")
            continue

        if op == "Pad" and ins and ins[0] in segs:
            pads = None
            if len(ins) > 1 and ins[1] in inits:
                pads = numpy_helper.to_array(inits[ins[1]]).tolist()
            elif _attr(node, "pads") is not None:
                pads = list(_attr(node, "pads"))
            r = rank_of(ins[0]) or 4
            if pads is not None and len(pads) == 2 * r and pads[1] == 0 and pads[1 + r] == 0 \
                    and not (len(ins) > 3 and ins[3]):
                passthrough(ins[0], outs[0])
                continue
            freeze(ins[0], f"{name}: Pad along channels or non-constant pads")
            fresh(outs[0], f"{name}: Pad not understood")
            continue

        if op == "Flatten" and ins and ins[0] in segs:
            s = shapes.get(ins[0])
            if int(_attr(node, "axis", 1)) == 1 and s and len(s) >= 2 and all(d == 1 for d in s[2:]):
                passthrough(ins[0], outs[0], 2)
                continue
            freeze(ins[0], f"{name}: Flatten of a non-1x1 feature map")
            fresh(outs[0], f"{name}: Flatten")
            continue

        if op in ("Gemm", "MatMul") and ins and ins[0] in segs:
            a, b = ins[0], ins[1]
            ok = b in inits and (rank_of(a) == 2)
            if op == "Gemm":
                ok = ok and int(_attr(node, "transA", 0)) == 0
                axis = 1 if int(_attr(node, "transB", 0)) == 1 else 0
            else:
                axis = 0
                ok = ok and len(inits[b].dims) == 2 if b in inits else False
            if ok:
                slices.setdefault((name, 1), []).append((axis, segs[a]))
            else:
                freeze(a, f"{name}: {op} input not a 2D [N, C] tensor with constant weights")
            for o in outs:
                fresh(o, f"{name}: {op} output (not pruned)")
            continue

        # anything else: every channel tensor it touches is frozen
        for t in data_in:
            freeze(t, f"{name}: {op} is not channel-aware")
        for o in outs:
            fresh(o, f"{name}: {op} output")

    for out in g.output:
        freeze(out.name, f"graph output {out.name!r}")

    # resolve union-find roots
    groups: dict[int, ChannelGroup] = {}
    for gid in range(len(uf.parent)):
        root = uf.find(gid)
        grp = groups.setdefault(root, ChannelGroup(gid=root, size=size[root]))
        grp.producers.extend(producers.get(gid, []))
        grp.frozen_reasons.extend(frozen.get(gid, []))

    def canon(s: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [(uf.find(gid), n) for gid, n in s]

    return ChannelAnalysis(
        groups=groups,
        tensor_segments={t: canon(s) for t, s in segs.items()},
        slices={k: [(ax, canon(s)) for ax, s in v] for k, v in slices.items()},
        group_attr={n: uf.find(gid) for n, gid in group_attr.items()},
        bn_of_producer=bn_of,
    )
