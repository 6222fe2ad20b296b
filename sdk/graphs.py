"""Walk an ONNX model's graphs, control-flow subgraphs included.

Models exported with a KV cache keep whole decoders inside ``If`` branches (Optimum's
merged decoder selects one with ``use_cache_branch``); their weights usually sit in the
main graph's initializers and the branches read them from the outer scope. A pass that
rewrites weights must therefore look into every subgraph and count a name's uses across
all of them before it drops an initializer.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import onnx

__all__ = ["count_ops_deep", "drop_unused", "initializer_map", "iter_graphs", "iter_scoped", "local_uses", "use_counts"]


def iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every subgraph below it (If branches, Loop / Scan bodies), outer first.

    Lazy: a subgraph is reached through its node as it is when the walk gets there. Code
    that replaces a graph's node list (``del g.node[:]; g.node.extend(...)`` copies every
    node, subgraphs included) must visit inner graphs first (``reversed(list(...))``).
    """
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from iter_graphs(g)


def iter_scoped(graph: onnx.GraphProto, outer: dict[str, onnx.NodeProto] | None = None
                ) -> Iterator[tuple[onnx.GraphProto, dict[str, onnx.NodeProto]]]:
    """(graph, producer of every value visible in it) for ``graph`` and each subgraph.

    Names are looked up in the graph's own scope first, then outwards: the two branches of
    a merged decoder reuse the same value names, each in its own scope.
    """
    producer = dict(outer or {})
    producer.update({o: n for n in graph.node for o in n.output})
    yield graph, producer
    for node in graph.node:
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else \
                list(attr.graphs) if attr.type == onnx.AttributeProto.GRAPHS else []
            for g in subs:
                yield from iter_scoped(g, producer)


def local_uses(graph: onnx.GraphProto) -> Counter:
    """How many node inputs and graph outputs name each value in ``graph`` and below it."""
    uses: Counter = Counter()
    for g in iter_graphs(graph):
        for node in g.node:
            uses.update(i for i in node.input if i)
        uses.update(o.name for o in g.output)
    return uses


def use_counts(model: onnx.ModelProto) -> Counter:
    """How many node inputs and graph outputs name each value, over all graphs."""
    return local_uses(model.graph)


def initializer_map(model: onnx.ModelProto) -> dict[str, tuple[onnx.GraphProto, onnx.TensorProto]]:
    """name -> (the graph holding it, the tensor), over all graphs (the outermost one first)."""
    out: dict[str, tuple[onnx.GraphProto, onnx.TensorProto]] = {}
    for g in iter_graphs(model.graph):
        for t in g.initializer:
            out.setdefault(t.name, (g, t))
    return out


def drop_unused(model: onnx.ModelProto) -> tuple[int, int]:
    """Remove nodes none of whose outputs is used in their scope, and initializers nobody in
    their scope reads, in every graph, until nothing changes; (nodes, initializers) removed."""
    nodes = inits = 0
    changed = True
    while changed:
        changed = False
        for g in reversed(list(iter_graphs(model.graph))):   # inner first: see iter_graphs
            uses = local_uses(g)
            keep = [n for n in g.node if any(uses[o] for o in n.output if o) or not any(n.output)]
            if len(keep) != len(g.node):
                nodes += len(g.node) - len(keep)
                changed = True
                del g.node[:]
                g.node.extend(keep)
    for g in reversed(list(iter_graphs(model.graph))):   # inner first: see iter_graphs
        uses = local_uses(g)
        keep_t = [t for t in g.initializer if uses[t.name]]
        if len(keep_t) != len(g.initializer):
            inits += len(g.initializer) - len(keep_t)
            del g.initializer[:]
            g.initializer.extend(keep_t)
    return nodes, inits


def count_ops_deep(model: onnx.ModelProto) -> Counter:
    """Op types over every graph, subgraphs included."""
    return Counter(n.op_type for g in iter_graphs(model.graph) for n in g.node)
