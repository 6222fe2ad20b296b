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

The walk's state lives in :mod:`sdk.compress.channel_trace`, the per-operator rules in
:mod:`sdk.compress.channel_ops`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from sdk.compress.channel_ops import RULES, not_channel_aware
from sdk.compress.channel_trace import ChannelTrace, Node, Segments

__all__ = ["ChannelGroup", "ChannelAnalysis", "analyze_channels"]


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
    tensor_segments: dict[str, Segments]
    slices: dict[tuple[str, int], list[tuple[int, Segments]]]
    group_attr: dict[str, int]                                   # node name -> gid
    bn_of_producer: dict[str, str]                               # conv name -> BN node name

    def prunable(self) -> list[ChannelGroup]:
        return [g for g in self.groups.values() if not g.frozen and g.producers]


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
    t = ChannelTrace(inits, _shapes(model), exclude)
    for inp in g.input:
        if inp.name not in inits:
            t.fresh(inp.name, f"graph input {inp.name!r}")
    for node in g.node:
        n = Node.of(node, inits)
        rule = RULES.get(n.op)
        if rule is None or not rule(t, n):
            not_channel_aware(t, n)
    for out in g.output:
        t.freeze(out.name, f"graph output {out.name!r}")

    # resolve union-find roots
    groups: dict[int, ChannelGroup] = {}
    for gid in range(len(t.uf.parent)):
        root = t.uf.find(gid)
        grp = groups.setdefault(root, ChannelGroup(gid=root, size=t.size[root]))
        grp.producers.extend(t.producers.get(gid, []))
        grp.frozen_reasons.extend(t.frozen.get(gid, []))

    def canon(s: Segments) -> Segments:
        return [(t.uf.find(gid), n) for gid, n in s]

    return ChannelAnalysis(
        groups=groups,
        tensor_segments={x: canon(s) for x, s in t.segs.items()},
        slices={k: [(ax, canon(s)) for ax, s in v] for k, v in t.slices.items()},
        group_attr={name: t.uf.find(gid) for name, gid in t.group_attr.items()},
        bn_of_producer=t.bn_of,
    )
