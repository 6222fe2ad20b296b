"""Structured channel pruning directly on an ONNX graph (pass ``prune_channels``).

Whole output filters of Conv layers are removed and every consumer is rewired, so the
result is a smaller *dense* model that onnxruntime runs faster as it is (no sparse kernels
needed). Which channels may be removed together comes from
:func:`sdk.compress.graph_channels.analyze_channels` (union-find channel groups through
activations, BN, residual Add/Mul, Concat, depthwise convs, pooling/Resize and a
GlobalAveragePool->Flatten->Gemm head). Groups that reach a graph output, a Reshape, a
Transpose or an op the analysis does not understand are left untouched, so the model's
outputs keep their shapes.

Importance of a channel: the L1 or L2 norm of its filter, summed over every Conv that
produces the group (both sides of a residual), optionally scaled by the following
BatchNormalization's ``|gamma| / sqrt(var + eps)``. ``scope="per_layer"`` removes the
same fraction from every group; ``scope="global"`` normalises each group's importances by
their mean and removes the globally least important channels (at most ``max_ratio`` of any
group). Kept counts are rounded up to a multiple of ``round_to`` and never fall below
``min_channels``.

With calibration inputs, ``criterion="activation"`` ranks channels by what they actually
contribute (RMS at the consumers' inputs times the consumer weights that read them), and
``reconstruct="oneshot"|"sequential"`` re-fits the consuming layers by least squares
(:mod:`sdk.compress.prune_reconstruct`) so the layer outputs stay close to the original.

Pruning changes outputs unless the removed channels carried no signal; small, already
compact models (YOLOX-nano) are fragile: see ``benchmarks/prune_yolox.py``. Recover accuracy
with the re-fit above and/or :func:`sdk.compress.distill.finetune_pruned_onnx`.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping

import numpy as np
import onnx
from onnx import numpy_helper
from pydantic import Field

from ..errors import CompressionError
from .base import ModelPass, PassConfig, PassContext, register_pass
from .channel_importance import activation_importance, filter_importance
from .channel_trace import attr as _attr
from .graph_channels import ChannelAnalysis, analyze_channels

logger = logging.getLogger("edgewise")

__all__ = ["PruneChannels", "PruneChannelsConfig", "ChannelPruneReport", "prune_channels",
           "count_params"]


class PruneChannelsConfig(PassConfig):
    ratio: float = Field(0.25, ge=0.0, lt=1.0,
                         description="fraction of channels to remove (per group for per_layer; "
                                     "of all prunable channels for global)")
    scope: Literal["per_layer", "global"] = Field(
        "per_layer", description="per_layer: same ratio in every group; global: one threshold "
                                 "over mean-normalised importances")
    norm: Literal["l1", "l2"] = Field("l1", description="filter norm used as channel importance")
    criterion: Literal["weight", "activation"] = Field(
        "weight", description="weight: norm of each channel's filter(s); activation (needs calib): "
                              "RMS of the channel at its consumers' inputs times the norm of the "
                              "consumer weights that read it, i.e. what the channel contributes")
    bn_scale: bool = Field(True, description="scale importance by the following BatchNormalization's "
                                             "|gamma|/sqrt(var+eps) when there is one")
    min_channels: int = Field(8, ge=1, description="never keep fewer channels than this in a group")
    round_to: int = Field(8, ge=1, description="round kept channel counts up to a multiple of this "
                                               "(8 suits AVX2 kernels); 1 disables")
    min_group: int = Field(0, ge=0, description="leave channel groups with fewer channels than this "
                                                 "unpruned (narrow layers are information bottlenecks)")
    max_ratio: float = Field(0.9, gt=0.0, lt=1.0,
                             description="global scope: most a single group may lose")
    exclude: list[str] = Field(default_factory=list,
                               description="Conv node names whose channel group must not be pruned")
    reconstruct: Literal["none", "oneshot", "sequential"] = Field(
        "none", description="re-fit the layers consuming pruned channels by least squares on "
                            "calibration inputs (needs calib): oneshot = one pass, sequential = "
                            "layer by layer on the pruned model (slower, more accurate)")
    calib_samples: int = Field(32, ge=1, description="most calibration inputs used for reconstruction")
    ridge: float = Field(1e-3, ge=0, description="relative ridge term of the reconstruction least squares")
    reconstruct_chunk: int = Field(8, ge=1, description="sequential reconstruction: layers re-fitted per "
                                                        "pass over the calibration inputs")


@dataclass
class ChannelPruneReport:
    """What :func:`prune_channels` did: per group, and parameter counts before/after."""

    params_before: int
    params_after: int
    groups_total: int
    groups_pruned: int
    groups_frozen: int
    channels_before: int
    channels_after: int
    per_group: list[dict] = field(default_factory=list)
    shapes: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    reconstructed: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "params_before": self.params_before, "params_after": self.params_after,
            "param_ratio": self.params_after / max(1, self.params_before),
            "groups_total": self.groups_total, "groups_pruned": self.groups_pruned,
            "groups_frozen": self.groups_frozen, "channels_before": self.channels_before,
            "channels_after": self.channels_after, "per_group": self.per_group,
            "shapes": {k: [list(a), list(b)] for k, (a, b) in self.shapes.items()},
            "reconstructed": self.reconstructed,
        }


def count_params(model: onnx.ModelProto) -> int:
    """Number of float parameters in the model's initializers (ints such as shapes excluded)."""
    total = 0
    for init in model.graph.initializer:
        if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                              onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16):
            total += int(np.prod(init.dims)) if init.dims else 1
    return total


def _prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy, move Constant nodes into initializers, give every node a unique name."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    keep_nodes = []
    for node in g.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(node.attribute[0].t)
            t.name = node.output[0]
            g.initializer.append(t)
        else:
            keep_nodes.append(node)
    del g.node[:]
    g.node.extend(keep_nodes)
    seen: set[str] = set()
    for i, node in enumerate(g.node):
        if not node.name or node.name in seen:
            base = node.name or f"{node.op_type}_{i}"
            name, k = base, 0
            while name in seen:
                k += 1
                name = f"{base}_{k}"
            node.name = name
        seen.add(node.name)
    return m


def _n_keep(size: int, n_keep: int, cfg: PruneChannelsConfig) -> int:
    n = max(n_keep, min(cfg.min_channels, size))
    if cfg.round_to > 1:
        n = int(math.ceil(n / cfg.round_to) * cfg.round_to)
    return int(min(n, size))


def _indices(segments: list[tuple[int, int]], keep: dict[int, np.ndarray]) -> np.ndarray:
    parts, off = [], 0
    for gid, n in segments:
        parts.append(keep.get(gid, np.arange(n)) + off)
        off += n
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _consumers(m: onnx.ModelProto, ops: dict, keep: dict[int, np.ndarray], an: ChannelAnalysis) -> list:
    """Nodes whose *input* channels lose pruned channels: what reconstruction re-fits."""
    from .prune_reconstruct import Consumer

    nodes = {n.name: n for n in m.graph.node}
    out = []
    for (nname, idx), specs in ops.items():
        node = nodes[nname]
        if idx != 1 or node.op_type not in ("Conv", "Gemm"):
            continue
        if node.op_type == "Conv":
            if int(_attr(node, "group", 1)) != 1:
                continue
            in_specs = [segs for ax, segs in specs if ax == 1]
            out_specs = [segs for ax, segs in specs if ax == 0]
            k = [d for d in _init_dims(m, node.input[1])[2:]]
            kind: Literal["conv1x1", "convkxk", "gemm_t", "gemm"] = "conv1x1" if all(d == 1 for d in k) \
                else "convkxk"
        else:
            ax_in = 1 if int(_attr(node, "transB", 0)) == 1 else 0
            in_specs = [segs for ax, segs in specs if ax == ax_in]
            out_specs = []
            kind = "gemm_t" if ax_in == 1 else "gemm"
        if not in_specs or not any(gid in keep for gid, _ in in_specs[0]):
            continue
        n_out = _init_dims(m, node.input[1])[0 if kind != "gemm" else 1]
        out.append(Consumer(node=nname, tensor=node.input[0], sel_in=_indices(in_specs[0], keep),
                            sel_out=_indices(out_specs[0], keep) if out_specs else np.arange(n_out),
                            kind=kind))
    return out


def _init_dims(m: onnx.ModelProto, name: str) -> list[int]:
    for i in m.graph.initializer:
        if i.name == name:
            return list(i.dims)
    raise CompressionError(f"initializer {name!r} not found")


def prune_channels(model: onnx.ModelProto, config: PruneChannelsConfig | None = None,
                   keep: dict[int, np.ndarray] | None = None,
                   calib: Iterable[Mapping[str, np.ndarray]] | None = None,
                   ) -> tuple[onnx.ModelProto, ChannelPruneReport]:
    """Return a channel-pruned copy of ``model`` and a report.

    ``keep`` (group id -> sorted channel indices, group ids from :func:`analyze_channels`
    on the same model) overrides the importance-based choice; meant for tests and tools.
    ``calib`` (input feeds) is needed when ``config.reconstruct`` is not ``"none"``.
    """
    cfg = config or PruneChannelsConfig()
    if cfg.reconstruct != "none" and calib is None:
        raise CompressionError(f"reconstruct={cfg.reconstruct!r} needs calibration inputs (calib=...), got none")
    if cfg.criterion == "activation" and calib is None:
        raise CompressionError("criterion='activation' needs calibration inputs (calib=...), got none")
    m = _prepare(model)
    original = _prepare(model)
    g = m.graph
    nodes = {n.name: n for n in g.node}
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    an = analyze_channels(m, exclude=set(cfg.exclude))
    params_before = count_params(m)
    prunable = [grp for grp in an.prunable() if grp.size >= cfg.min_group]

    if keep is None:
        keep = {}
        if cfg.criterion == "activation":
            assert calib is not None      # checked above
            imps = activation_importance(m, an, prunable, inits, nodes, calib, cfg.calib_samples)
        else:
            imps = {grp.gid: filter_importance(an, grp.gid, cfg.norm, cfg.bn_scale, inits, nodes) for grp in prunable}
        if cfg.scope == "per_layer":
            for grp in prunable:
                n = _n_keep(grp.size, grp.size - int(math.floor(cfg.ratio * grp.size)), cfg)
                keep[grp.gid] = np.sort(np.argsort(-imps[grp.gid], kind="stable")[:n])
        elif prunable:
            normed = {gid: v / max(float(v.mean()), 1e-12) for gid, v in imps.items()}
            allv = np.concatenate(list(normed.values()))
            k = int(math.floor(cfg.ratio * allv.size))
            thr = np.partition(allv, k - 1)[k - 1] if k > 0 else -np.inf
            for grp in prunable:
                v = normed[grp.gid]
                n = int((v > thr).sum())
                n = max(n, grp.size - int(math.floor(cfg.max_ratio * grp.size)))
                n = _n_keep(grp.size, n, cfg)
                keep[grp.gid] = np.sort(np.argsort(-v, kind="stable")[:n])
    else:
        for gid in keep:
            if gid not in an.groups or an.groups[gid].frozen or not an.groups[gid].producers:
                raise CompressionError(f"channel group {gid} is not prunable (expected one of "
                                       f"{sorted(x.gid for x in prunable)})")
        keep = {gid: np.asarray(sorted(v), dtype=np.int64) for gid, v in keep.items()}
    keep = {gid: idx for gid, idx in keep.items() if idx.size < an.groups[gid].size}

    # every (node, input) that needs indexing: consumers/params from the analysis + producers
    ops: dict[tuple[str, int], list[tuple[int, list[tuple[int, int]]]]] = {
        k: list(v) for k, v in an.slices.items()}
    for gid in keep:
        for pname in an.groups[gid].producers:
            node = nodes[pname]
            ops.setdefault((pname, 1), []).append((0, [(gid, an.groups[gid].size)]))
            if len(node.input) > 2 and node.input[2]:
                ops.setdefault((pname, 2), []).append((0, [(gid, an.groups[gid].size)]))

    consumers = _consumers(m, ops, keep, an) if cfg.reconstruct != "none" else []
    uses: dict[str, int] = {}
    for node in g.node:
        for i in node.input:
            if i in inits:
                uses[i] = uses.get(i, 0) + 1
    shapes: dict[str, tuple[list[int], list[int]]] = {}
    new_inits: dict[str, np.ndarray] = {}
    for (nname, idx), specs in ops.items():
        if not any(gid in keep for _, segs in specs for gid, _ in segs):
            continue
        node = nodes[nname]
        src = node.input[idx]
        arr = inits[src]
        for axis, segs in specs:
            sel = _indices(segs, keep)
            if arr.shape[axis] != sum(n for _, n in segs):
                raise CompressionError(
                    f"{nname}: input {src!r} has {arr.shape[axis]} channels on axis {axis}, "
                    f"expected {sum(n for _, n in segs)} from the channel analysis")
            arr = np.take(arr, sel, axis=axis)
        dst = src if uses[src] == 1 else f"{src}__pruned_{nname}_{idx}"
        new_inits[dst] = arr
        shapes[dst] = (list(inits[src].shape), list(arr.shape))
        node.input[idx] = dst
    for nname, gid in an.group_attr.items():
        if gid in keep:
            for a in nodes[nname].attribute:
                if a.name == "group":
                    a.i = int(keep[gid].size)

    used = {i for node in g.node for i in node.input} | {o.name for o in g.output}
    kept_inits = []
    for init in g.initializer:
        if init.name in new_inits:
            kept_inits.append(numpy_helper.from_array(new_inits.pop(init.name), init.name))
        elif init.name in used:
            kept_inits.append(init)
    for name, arr in new_inits.items():
        kept_inits.append(numpy_helper.from_array(arr, name))
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    del g.value_info[:]
    try:
        m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        onnx.checker.check_model(m)
    except Exception as exc:  # noqa: BLE001 - any checker/inference failure is a pruning bug
        raise CompressionError(f"pruned graph failed shape inference / onnx.checker: {exc}") from exc

    recon: dict = {}
    if consumers:
        from .prune_reconstruct import reconstruct

        assert calib is not None and cfg.reconstruct != "none"     # consumers are only listed to re-fit them
        m, recon = reconstruct(original, m, consumers, calib, mode=cfg.reconstruct,
                               ridge=cfg.ridge, max_samples=cfg.calib_samples,
                               chunk=cfg.reconstruct_chunk)
        onnx.checker.check_model(m)

    per_group: list[dict[str, Any]] = []
    for grp in an.groups.values():
        if not grp.producers:
            continue
        per_group.append({
            "gid": grp.gid, "producers": grp.producers, "size": grp.size,
            "kept": int(keep[grp.gid].size) if grp.gid in keep else grp.size,
            "frozen": grp.frozen_reasons[:3],
        })
    ch_before = sum(grp.size for grp in an.groups.values() if grp.producers)
    ch_after = sum(d["kept"] for d in per_group)
    report = ChannelPruneReport(
        params_before=params_before, params_after=count_params(m),
        groups_total=len(per_group), groups_pruned=len(keep),
        groups_frozen=sum(1 for grp in an.groups.values() if grp.producers and grp.frozen),
        channels_before=ch_before, channels_after=ch_after, per_group=per_group, shapes=shapes,
        reconstructed=recon)
    logger.info("prune_channels: %s groups pruned of %s (%s frozen), params %s -> %s",
                report.groups_pruned, report.groups_total, report.groups_frozen,
                report.params_before, report.params_after)
    return m, report


@register_pass
class PruneChannels(ModelPass):
    """Structured channel pruning: remove whole Conv filters and rewire their consumers."""

    name = "prune_channels"
    Config = PruneChannelsConfig
    config: PruneChannelsConfig  # the validated config (narrows Pass.config for the type checker)

    def transform(self, model: onnx.ModelProto, ctx: PassContext) -> tuple[onnx.ModelProto, dict]:
        cfg = self.config
        needs_data = cfg.reconstruct != "none" or cfg.criterion == "activation"
        pruned, report = prune_channels(model, cfg, calib=ctx.calib if needs_data else None)
        return pruned, report.as_dict()
