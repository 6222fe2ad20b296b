"""How much each channel of a prunable group matters, for :mod:`sdk.compress.prune_channels`.

* :func:`filter_importance`: from the weights alone (filter norms, BN scale).
* :func:`activation_importance`: from calibration data, what each channel contributes at its
  consumers (RMS of the channel times the norm of the consumer weights that read it).
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import onnx

from sdk.compress.channel_trace import attr
from sdk.compress.graph_channels import ChannelAnalysis
from sdk.compress.prune_reconstruct import with_outputs
from sdk.errors import CompressionError

__all__ = ["filter_importance", "activation_importance"]


def filter_importance(an: ChannelAnalysis, gid: int, norm: str, bn_scale: bool, inits: dict[str, np.ndarray],
                      nodes: dict[str, onnx.NodeProto]) -> np.ndarray:
    """Per channel of group ``gid``: the L1 or L2 norm of its filter summed over the Convs that
    produce it, scaled by the following BatchNormalization's ``|gamma| / sqrt(var + eps)``
    when ``bn_scale``."""
    grp = an.groups[gid]
    imp = np.zeros(grp.size, dtype=np.float64)
    for pname in grp.producers:
        node = nodes[pname]
        w = inits[node.input[1]].astype(np.float64).reshape(grp.size, -1)
        s = np.abs(w).sum(1) if norm == "l1" else np.sqrt((w * w).sum(1))
        bn = an.bn_of_producer.get(pname)
        if bn_scale and bn is not None:
            b = nodes[bn]
            gamma = inits[b.input[1]].astype(np.float64)
            var = inits[b.input[4]].astype(np.float64)
            eps = float(attr(b, "epsilon", 1e-5))
            s = s * np.abs(gamma) / np.sqrt(var + eps)
        imp += s
    return imp


def activation_importance(m: onnx.ModelProto, an: ChannelAnalysis, prunable: list,
                           inits: dict[str, np.ndarray], nodes: dict[str, onnx.NodeProto],
                           calib: Iterable[Mapping[str, np.ndarray]], limit: int) -> dict[int, np.ndarray]:
    """importance[c] = sum over consumers of RMS(x_c) * ||W[:, c]||_2 (calibration statistics)."""
    import onnxruntime as ort

    wanted = {grp.gid for grp in prunable}
    reads: list[tuple[str, np.ndarray, list[tuple[int, int]]]] = []   # tensor, per-input-channel norm, segs
    for (nname, idx), specs in an.slices.items():
        node = nodes[nname]
        for axis, segs in specs:
            if idx != 1 or not any(gid in wanted for gid, _ in segs):
                continue
            w = inits[node.input[1]].astype(np.float64)
            if node.op_type == "Conv" and axis == 1 and int(attr(node, "group", 1)) == 1:
                norms = np.sqrt((np.moveaxis(w, 1, 0).reshape(w.shape[1], -1) ** 2).sum(1))
            elif node.op_type in ("Gemm", "MatMul"):
                norms = np.sqrt((np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1) ** 2).sum(1))
            else:
                continue
            reads.append((node.input[0], norms, segs))
    names = sorted({t for t, _, _ in reads})

    sess = ort.InferenceSession(with_outputs(m, names), providers=["CPUExecutionProvider"])
    sq: dict[str, np.ndarray] = {}
    count: dict[str, int] = {}
    for _, feed in zip(range(limit), calib, strict=False):
        for n, x in zip(names, sess.run(names, dict(feed)), strict=True):
            x = np.moveaxis(np.asarray(x, np.float64), 1, 0).reshape(x.shape[1], -1)
            sq[n] = sq.get(n, 0) + (x * x).sum(1)
            count[n] = count.get(n, 0) + x.shape[1]
    if not count:
        raise CompressionError("criterion='activation' got no calibration inputs")
    imps = {grp.gid: np.zeros(grp.size) for grp in prunable}
    for tensor, norms, segs in reads:
        rms = np.sqrt(sq[tensor] / count[tensor])
        off = 0
        for gid, width in segs:
            if gid in imps:
                imps[gid] += rms[off:off + width] * norms[off:off + width]
            off += width
    return imps
