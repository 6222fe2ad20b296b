"""Unstructured magnitude pruning of Conv / Gemm / MatMul weights (pass ``prune_magnitude``).

The smallest-magnitude weights are set to exactly zero, either with one threshold over all
eligible tensors (``scope="global"``) or the same sparsity in each (``scope="per_layer"``).

How this makes the shipped model smaller, honestly: onnxruntime has no sparse Conv kernel,
and ONNX ``sparse_initializer`` is densified at load time, so the ``.onnx`` file and the
inference speed stay the same. What shrinks is the *bundle archive*: long runs of zero
bytes deflate extremely well, and ``sdk.bundle.pack_bundle`` writes a zip-deflate ``.ewb``.
At 50-80% sparsity a float32 model's archive is typically 1.5-3x smaller than the dense
one's (measure it with :func:`deflated_size`). Combined with INT8 quantization afterwards,
pruned weights stay exact zeros (zero-point) and the archive shrinks again, on top of the
4x from INT8. For speed, use structured pruning (:mod:`sdk.compress.prune_channels`).
"""
from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import numpy_helper
from pydantic import Field

from ..errors import CompressionError
from .base import ModelPass, PassConfig, PassContext, register_pass

logger = logging.getLogger("edgewise")

__all__ = ["PruneMagnitude", "PruneMagnitudeConfig", "prune_magnitude", "deflated_size"]

_WEIGHT_INPUT = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (1,), "MatMul": (0, 1)}
_FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)


class PruneMagnitudeConfig(PassConfig):
    sparsity: float = Field(0.5, ge=0.0, le=1.0,
                            description="fraction of the eligible weights set to zero")
    scope: Literal["global", "per_layer"] = Field(
        "global", description="global: one magnitude threshold over all eligible weights; "
                              "per_layer: the same sparsity in every tensor")
    min_params: int = Field(256, ge=0, description="skip weight tensors with fewer elements than this")
    exclude: list[str] = Field(default_factory=list,
                               description="node names or initializer names to leave dense")


def _eligible(model: onnx.ModelProto, cfg: PruneMagnitudeConfig) -> list[str]:
    inits = {i.name: i for i in model.graph.initializer}
    out: list[str] = []
    excl = set(cfg.exclude)
    for node in model.graph.node:
        if node.op_type not in _WEIGHT_INPUT or node.name in excl:
            continue
        for k in _WEIGHT_INPUT[node.op_type]:
            if k >= len(node.input):
                continue
            name = node.input[k]
            init = inits.get(name)
            if init is None or name in excl or name in out or init.data_type not in _FLOATS:
                continue
            if len(init.dims) < 2 or int(np.prod(init.dims)) < cfg.min_params:
                continue
            out.append(name)
    return out


def prune_magnitude(model: onnx.ModelProto, config: PruneMagnitudeConfig | None = None
                    ) -> tuple[onnx.ModelProto, dict]:
    """Return a copy of ``model`` with small weights zeroed, and per-tensor statistics.

    The stats dict has ``tensors`` (name -> ``{"shape", "params", "sparsity"}``, the
    *measured* fraction of zeros after pruning), ``pruned_params``, ``eligible_params``
    and ``sparsity`` (overall measured sparsity of the eligible weights).
    """
    cfg = config or PruneMagnitudeConfig()
    m = onnx.ModelProto()
    m.CopyFrom(model)
    names = _eligible(m, cfg)
    if not names:
        raise CompressionError(
            f"no Conv/Gemm/MatMul weight initializer with >= {cfg.min_params} elements to prune "
            "(lower min_params or check that weights are initializers, not computed)")
    inits = {i.name: i for i in m.graph.initializer}
    arrays = {n: numpy_helper.to_array(inits[n]) for n in names}
    if cfg.scope == "global":
        mags = np.concatenate([np.abs(a.astype(np.float32)).ravel() for a in arrays.values()])
        k = int(round(cfg.sparsity * mags.size))
        thr = np.partition(mags, k - 1)[k - 1] if k > 0 else -1.0
        masks = {n: np.abs(a.astype(np.float32)) > thr for n, a in arrays.items()}
    else:
        masks = {}
        for n, a in arrays.items():
            flat = np.abs(a.astype(np.float32)).ravel()
            k = int(round(cfg.sparsity * flat.size))
            keep = np.ones(flat.size, dtype=bool)
            if k > 0:
                keep[np.argpartition(flat, k - 1)[:k]] = False
            masks[n] = keep.reshape(a.shape)
    stats: dict = {"tensors": {}, "scope": cfg.scope, "target_sparsity": cfg.sparsity}
    total = zeros = 0
    for n, a in arrays.items():
        pruned = np.where(masks[n], a, np.zeros((), a.dtype)).astype(a.dtype)
        inits[n].CopyFrom(numpy_helper.from_array(pruned, n))
        z = int((pruned == 0).sum())
        stats["tensors"][n] = {"shape": list(a.shape), "params": int(a.size),
                               "sparsity": z / max(1, a.size)}
        total += a.size
        zeros += z
    stats.update(eligible_params=int(total), pruned_params=int(zeros), sparsity=zeros / max(1, total))
    logger.info("prune_magnitude: %s tensors, measured sparsity %.3f", len(arrays), stats["sparsity"])
    return m, stats


def deflated_size(path_or_bytes: str | Path | bytes, level: int = 6) -> int:
    """Bytes the file takes inside a zip-deflate archive (as ``sdk.bundle.pack_bundle`` writes)."""
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        zf.writestr("model.onnx", data)
    return buf.getbuffer().nbytes


@register_pass
class PruneMagnitude(ModelPass):
    """Unstructured magnitude pruning; shrinks the deflated bundle, not the latency."""

    name = "prune_magnitude"
    Config = PruneMagnitudeConfig
    config: PruneMagnitudeConfig

    def transform(self, model: onnx.ModelProto, ctx: PassContext) -> tuple[onnx.ModelProto, dict]:
        return prune_magnitude(model, self.config)

    def finish(self, model_in: Path, model_out: Path, report: dict) -> dict:
        return {**report, "deflated_bytes_before": deflated_size(model_in),
                "deflated_bytes_after": deflated_size(model_out)}
