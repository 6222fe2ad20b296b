"""The state of a channel-dependency analysis while it walks a graph (see
:mod:`sdk.compress.graph_channels`): channel segments per tensor, union-find over channel
groups, the reasons a group is frozen, and the parameters to slice.

The per-operator rules (:mod:`sdk.compress.channel_ops`) only call the verbs here:
:meth:`ChannelTrace.passthrough` (channel-transparent), :meth:`~ChannelTrace.unify` (two
tensors must keep the same channels), :meth:`~ChannelTrace.freeze` (a tensor the analysis
cannot follow) and :meth:`~ChannelTrace.opaque` (freeze the inputs, give each output its own
frozen group).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import onnx

Segments = list[tuple[int, int]]      # [(group id, channel count), ...]


class UnionFind:
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


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


@dataclass
class Node:
    """One node as the rules see it: inputs, non-constant inputs and outputs (names)."""

    proto: onnx.NodeProto
    name: str
    op: str
    ins: list[str]
    data_in: list[str]
    outs: list[str]

    @classmethod
    def of(cls, node: onnx.NodeProto, inits: dict[str, Any]) -> "Node":
        ins = list(node.input)
        return cls(node, node.name or (node.output[0] if node.output else ""), node.op_type, ins,
                   [i for i in ins if i and i not in inits], [o for o in node.output if o])

    def attr(self, name: str, default: Any = None) -> Any:
        return attr(self.proto, name, default)


class ChannelTrace:
    """What the walk knows so far; see the module docstring."""

    def __init__(self, inits: dict[str, onnx.TensorProto], shapes: dict[str, list[int | None]],
                 exclude: Iterable[str] = ()):
        self.inits, self.shapes, self.exclude = inits, shapes, set(exclude)
        self.uf = UnionFind()
        self.size: dict[int, int] = {}
        self.producers: dict[int, list[str]] = {}
        self.frozen: dict[int, list[str]] = {}
        self.segs: dict[str, Segments] = {}
        self.rank: dict[str, int] = {}
        self.slices: dict[tuple[str, int], list[tuple[int, Segments]]] = {}
        self.group_attr: dict[str, int] = {}
        self.bn_of: dict[str, str] = {}
        self.producer_node: dict[int, str] = {}

    # --- reading ---------------------------------------------------------------------------
    def channels_of(self, tensor: str) -> int | None:
        if tensor in self.segs:
            return sum(n for _, n in self.segs[tensor])
        s = self.shapes.get(tensor)
        return s[1] if s and len(s) >= 2 else None

    def rank_of(self, tensor: str) -> int | None:
        if tensor in self.rank:
            return self.rank[tensor]
        s = self.shapes.get(tensor)
        return len(s) if s is not None else None

    def const(self, name: str) -> Any:
        """The value of initializer ``name`` as a numpy array, None when it is not one."""
        from onnx import numpy_helper

        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None

    # --- verbs -----------------------------------------------------------------------------
    def new_group(self, n: int, reason: str | None = None) -> int:
        gid = self.uf.new()
        self.size[gid] = n
        if reason:
            self.frozen.setdefault(gid, []).append(reason)
        return gid

    def produce(self, conv: str, out: str, channels: int, rank: int) -> None:
        """``out`` holds the fresh output channels of the Conv ``conv`` (their filters may go)."""
        gid = self.new_group(channels)
        self.producers.setdefault(gid, []).append(conv)
        self.producer_node[gid] = conv
        if conv in self.exclude:
            self.frozen.setdefault(gid, []).append(f"{conv}: excluded")
        self.segs[out] = [(gid, channels)]
        self.rank[out] = rank

    def slice_param(self, node: str, index: int, axis: int, segs: Segments) -> None:
        """The initializer at input ``index`` of ``node`` follows ``segs`` along ``axis``."""
        self.slices.setdefault((node, index), []).append((axis, segs))

    def freeze(self, tensor: str, reason: str) -> None:
        for gid, _ in self.segs.get(tensor, []):
            self.frozen.setdefault(gid, []).append(reason)

    def fresh(self, tensor: str, reason: str) -> None:
        """Give an output we do not understand its own frozen group (when it has channels)."""
        r = self.rank_of(tensor)
        c = self.channels_of(tensor)
        if r is not None and r >= 2 and c:
            self.segs[tensor] = [(self.new_group(c, reason), c)]
            self.rank[tensor] = r

    def opaque(self, frozen: Iterable[str], outs: Iterable[str], why: str, out_why: str | None = None) -> bool:
        """Freeze ``frozen``; each of ``outs`` gets its own frozen group. Returns True (handled)."""
        for t in frozen:
            self.freeze(t, why)
        for o in outs:
            self.fresh(o, out_why or why)
        return True

    def passthrough(self, src: str, dst: str, r: int | None = None) -> None:
        if src in self.segs:
            self.segs[dst] = list(self.segs[src])
            self.rank[dst] = r if r is not None else self.rank_of(src) or 4

    def unify(self, a: Segments, b: Segments, why: str) -> bool:
        if [n for _, n in a] != [n for _, n in b]:
            for gid, _ in a + b:
                self.frozen.setdefault(gid, []).append(why)
            return False
        for (ga, _), (gb, _) in zip(a, b, strict=True):
            root = self.uf.union(ga, gb)
            for other in (ga, gb):
                if other != root and other in self.frozen:
                    self.frozen.setdefault(root, []).extend(self.frozen.pop(other))
        return True
