"""Per-node sensitivity of a static quantization: which nodes hurt the metric most.

Method ("leave one group in float"): quantize the whole model once with the given config
and evaluate it (``metric_all``); then for each group of quantizable nodes, quantize again
with that group kept in float and evaluate (``metric_g``). ``gain = metric_g - metric_all``
is what keeping the group in float buys back. A group is one node when the model has at
most ``max_evals`` quantizable nodes, otherwise a run of consecutive nodes in topological
order (a "block"), so the cost stays ``max_evals + 1`` quantize-and-evaluate rounds. Then
the block that helped most is split (``refine_evals`` more rounds: single nodes when it has
that many or fewer) so the nodes kept in float can be the harmful ones, not their whole block.
Calibration runs once: the ranges are cached and reused for every round.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sdk.compress.base import PassContext
from sdk.compress.graph_prep import PER_CHANNEL_MIN_OPSET, load_model, prepare_for_quantization
from sdk.compress.quantize import QuantizeStatic, _op_types
from sdk.compress.workspace import Workspace
from sdk.errors import CompressionError

logger = logging.getLogger("edgewise")

#: op types worth keeping in float: the ones that carry weights and most compute
WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass
class NodeGroup:
    nodes: list[str]
    gain: float = 0.0
    metric: float | None = None
    tail: bool = False

    @property
    def label(self) -> str:
        if self.tail:
            return f"output tail: {', '.join(self.nodes[:3])}{'...' if len(self.nodes) > 3 else ''} ({len(self.nodes)})"
        return self.nodes[0] if len(self.nodes) == 1 else f"{self.nodes[0]}..{self.nodes[-1]} ({len(self.nodes)})"


@dataclass
class SensitivityResult:
    metric_all: float
    groups: list[NodeGroup] = field(default_factory=list)  # ranked, most harmful (highest gain) first
    evals: int = 0

    def top_nodes(self, k: int, min_gain: float = 0.0) -> list[str]:
        """Node names of the ``k`` groups whose float copy helps most (gain > ``min_gain``)."""
        out: list[str] = []
        for g in self.groups[:k]:
            if g.gain > min_gain:
                out.extend(g.nodes)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"metric_all_quantized": self.metric_all, "evals": self.evals,
                "groups": [{"nodes": g.label, "gain": g.gain, "metric": g.metric} for g in self.groups]}


def quantizable_nodes(model_path: str | Path, op_types: list[str] | tuple[str, ...] = WEIGHTED_OPS) -> list[str]:
    """Names of main-graph nodes of the given op types, in topological (file) order."""
    model = load_model(model_path, check=False, load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type in set(op_types) and n.name]


def tail_nodes(model_path: str | Path, weighted: tuple[str, ...] = WEIGHTED_OPS) -> list[str]:
    """Nodes after the last weighted op on every path to the outputs (a detector's decode head:
    Sigmoid, Concat of boxes and scores, Reshape, Transpose). Quantizing them forces values of
    very different ranges (box offsets, probabilities) onto one 8-bit scale."""
    model = load_model(model_path, check=False, load_external_data=False)
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(model.graph.node):
        for t in n.input:
            consumers.setdefault(t, []).append(i)
    nodes = list(model.graph.node)
    feeds_weighted = [False] * len(nodes)
    for i in range(len(nodes) - 1, -1, -1):  # file order is topological
        for t in nodes[i].output:
            for j in consumers.get(t, []):
                if nodes[j].op_type in weighted or feeds_weighted[j]:
                    feeds_weighted[i] = True
    return [n.name for i, n in enumerate(nodes) if n.name and n.op_type not in weighted and not feeds_weighted[i]
            and n.op_type not in ("Constant", "Shape")]


def group_nodes(names: list[str], max_groups: int) -> list[list[str]]:
    if len(names) <= max_groups:
        return [[n] for n in names]
    size = -(-len(names) // max_groups)
    return [names[i:i + size] for i in range(0, len(names), size)]


def analyze_sensitivity(model_path: str | Path, calib: Any, evaluator: Callable[[Path], float],
                        config: QuantizeStatic.Config | dict | None = None, *, max_evals: int = 12,
                        refine_evals: int = 4,
                        op_types: tuple[str, ...] = WEIGHTED_OPS, work_dir: str | Path | None = None,
                        progress: bool = False) -> SensitivityResult:
    """Rank groups of quantizable nodes by how much keeping them in float helps ``evaluator``.

    ``model_path`` is pre-processed here (as the quantizer does), so the node names in the
    result are valid ``nodes_to_exclude`` for :class:`QuantizeStatic` on the same model.
    """
    from sdk.progress import progress_bar

    base = QuantizeStatic(config or {})
    cfg = base.config
    tmp = tempfile.TemporaryDirectory(prefix="edgewise-sens-", dir=work_dir)
    try:
        root = Path(tmp.name)
        prep = prepare_for_quantization(model_path, root / "prep.onnx",
                                        min_opset=PER_CHANNEL_MIN_OPSET if cfg.per_channel else None,
                                        optimize=cfg.preprocess)
        allowed = set(_op_types(cfg, static=True)) & set(op_types)
        names = [n for n in quantizable_nodes(prep, tuple(allowed)) if n not in set(cfg.nodes_to_exclude)]
        if not names:
            raise CompressionError(f"sensitivity: {Path(model_path).name} has no quantizable {sorted(allowed)} nodes")
        groups = [NodeGroup(g) for g in group_nodes(names, max_evals)]
        tail = tail_nodes(prep)
        if tail:
            groups.append(NodeGroup(tail, tail=True))
        ws = Workspace(calib, cache_dir=root / "calib_cache")

        def quantize_eval(exclude: list[str], tag: str) -> float:
            q = QuantizeStatic(cfg, nodes_to_exclude=list(cfg.nodes_to_exclude) + exclude, preprocess=False)
            out = root / f"{tag}.onnx"
            wd = root / f"w_{tag}"
            q.run(prep, out, PassContext(work_dir=wd, workspace=ws))
            value = float(evaluator(out))
            out.unlink()
            return value

        metric_all = quantize_eval([], "all")
        res = SensitivityResult(metric_all=metric_all, evals=1)
        for i, g in enumerate(progress_bar(groups, desc="sensitivity", unit="group", enabled=progress)):
            g.metric = quantize_eval(g.nodes, f"g{i}")
            g.gain = g.metric - metric_all
            res.evals += 1
        best = max((g for g in groups if not g.tail and len(g.nodes) > 1 and g.gain > 0),
                   key=lambda g: g.gain, default=None)
        if best is not None and refine_evals > 0:
            for j, nodes in enumerate(group_nodes(best.nodes, refine_evals)):
                sub = NodeGroup(nodes)
                sub.metric = quantize_eval(nodes, f"r{j}")
                sub.gain = sub.metric - metric_all
                res.evals += 1
                groups.append(sub)
        res.groups = sorted(groups, key=lambda g: -g.gain)
        logger.info("sensitivity: all-quantized %.4f; top groups %s", metric_all,
                    ", ".join(f"{g.label}: +{g.gain:.4f}" for g in res.groups[:3]))
        return res
    finally:
        tmp.cleanup()
