"""Re-fit the layers that consume pruned channels, from calibration data (no training).

After channel pruning, a consumer Conv/Gemm sees fewer input channels. Its new weights are
the least-squares solution that best reproduces the *original* layer's output from what
it now receives (the linear-reconstruction step of He et al., "Channel Pruning for
Accelerating Very Deep Neural Networks", ICCV 2017, and ThiNet), with the bias re-fitted
too, so the removed channels' mean contribution is folded in:

    min_{W', b'}  E || W' x_kept + b'  -  (W x_full + b) ||^2

* 1x1 Conv (group 1), Gemm and MatMul consumers are re-fitted exactly from second-order
  statistics of their inputs, accumulated over the calibration inputs.
* kxk Conv consumers get the bias compensation only (mean of the removed channels times
  the removed weights; exact away from zero-padded borders).

``mode="oneshot"`` takes x from the original model for every layer (one pass over the
data); ``mode="sequential"`` takes x_kept from the pruned model as re-fitted so far, layer
by layer in graph order (a few layers per pass over the data), so later layers also
correct the error of earlier ones: slower, better.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import CompressionError

logger = logging.getLogger("edgewise")

__all__ = ["Consumer", "reconstruct"]


@dataclass
class Consumer:
    """A node whose input channels were pruned: its weight is re-fitted."""

    node: str                 # node name (same in the original and pruned graph)
    tensor: str               # its input tensor (name in both graphs)
    sel_in: np.ndarray        # kept input channel indices (into the original channels)
    sel_out: np.ndarray       # kept output rows of the original weight
    kind: Literal["conv1x1", "convkxk", "gemm_t", "gemm"]   # gemm_t: Gemm transB=1, weight (out, in);
    #                                                          gemm: Gemm transB=0, weight (in, out)


def _flat(x: np.ndarray) -> np.ndarray:
    """(N, C, ...) -> (C, M) samples as columns."""
    x = np.asarray(x, dtype=np.float64)
    return np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)


def _aug(x: np.ndarray) -> np.ndarray:
    return np.vstack([x, np.ones((1, x.shape[1]))])


def with_outputs(model: onnx.ModelProto, names: Iterable[str]) -> bytes:
    """Serialized copy of ``model`` that also outputs the tensors ``names`` (for probing)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
            have.add(n)
    return m.SerializeToString()


def _session(model_bytes: bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def _weights(orig_inits: dict[str, np.ndarray], node: onnx.NodeProto, c: Consumer
             ) -> tuple[np.ndarray, np.ndarray]:
    """Original weight as (out_kept, C_in [x taps]) and bias (out_kept,)."""
    w = orig_inits[node.input[1]].astype(np.float64)
    if c.kind == "gemm":
        w = w.T
    w = w[c.sel_out]
    if len(node.input) > 2 and node.input[2] and node.input[2] in orig_inits:
        b = orig_inits[node.input[2]].astype(np.float64).reshape(-1)
        full = orig_inits[node.input[1]].shape[1 if c.kind == "gemm" else 0]
        b = np.broadcast_to(b, (full,))[c.sel_out]
    else:
        b = np.zeros(w.shape[0])
    return w, np.asarray(b, dtype=np.float64)


def _solve(spp: np.ndarray, spo: np.ndarray, w_t: np.ndarray, ridge: float) -> np.ndarray:
    lam = ridge * max(np.trace(spp) / spp.shape[0], 1e-12)
    return np.linalg.solve(spp + lam * np.eye(spp.shape[0]), spo @ w_t.T)


def reconstruct(original: onnx.ModelProto, pruned: onnx.ModelProto, consumers: list[Consumer],
                feeds: Iterable[Mapping[str, np.ndarray]], mode: Literal["oneshot", "sequential"] = "sequential",
                ridge: float = 1e-3, max_samples: int = 32, chunk: int = 8) -> tuple[onnx.ModelProto, dict]:
    """Return ``pruned`` with its consumers' weights re-fitted; stats per consumer.

    Sequential mode re-fits ``chunk`` consumers (in graph order) per pass over the data,
    each from the pruned model as re-fitted by the previous passes.

    ``original`` and ``pruned`` must share node names (as :func:`prune_channels` keeps them).
    """
    feeds = [dict(f) for f in itertools.islice(feeds, max_samples)]
    if not feeds:
        raise CompressionError("reconstruction needs calibration inputs, got none")
    out = onnx.ModelProto()
    out.CopyFrom(pruned)
    onodes = {n.name: n for n in original.graph.node}
    pnodes = {n.name: n for n in out.graph.node}
    oinits = {i.name: numpy_helper.to_array(i) for i in original.graph.initializer}
    pinit = {i.name: i for i in out.graph.initializer}
    order = {n.name: k for k, n in enumerate(original.graph.node)}
    consumers = sorted(consumers, key=lambda c: order[c.node])
    stats: dict[str, dict] = {}

    def apply(c: Consumer, w_new: np.ndarray, b_new: np.ndarray) -> None:
        node = pnodes[c.node]
        wi = pinit[node.input[1]]
        w_old = numpy_helper.to_array(wi)
        if c.kind == "conv1x1":
            w = w_new.reshape(w_old.shape)
        elif c.kind == "gemm_t":
            w = w_new
        elif c.kind == "gemm":
            w = w_new.T
        else:
            w = w_old
        wi.CopyFrom(numpy_helper.from_array(w.astype(w_old.dtype), wi.name))
        if len(node.input) > 2 and node.input[2] in pinit:
            bi = pinit[node.input[2]]
            b_old = numpy_helper.to_array(bi)
            if b_old.size == b_new.size:
                bi.CopyFrom(numpy_helper.from_array(b_new.reshape(b_old.shape).astype(b_old.dtype), bi.name))
            else:  # a broadcast (scalar) bias: store the per-output one
                bi.CopyFrom(numpy_helper.from_array(b_new.astype(b_old.dtype), bi.name))
        elif np.any(b_new != 0) and c.kind in ("conv1x1", "convkxk"):
            name = f"{c.node}__bias"
            out.graph.initializer.append(numpy_helper.from_array(b_new.astype(np.float32), name))
            pinit[name] = out.graph.initializer[-1]
            if len(node.input) == 2:
                node.input.append(name)
            else:
                node.input[2] = name

    def refit(c: Consumer, spp: np.ndarray, spo: np.ndarray, soo_mean: np.ndarray) -> None:
        node = onodes[c.node]
        w, b = _weights(oinits, node, c)
        if c.kind == "convkxk":
            k = w.shape[2:]
            removed = np.setdiff1d(np.arange(w.shape[1]), c.sel_in)
            comp = (w[:, removed].sum(axis=tuple(range(2, w.ndim))) @ soo_mean[removed]) if removed.size else 0
            apply(c, w, b + comp)
            stats[c.node] = {"kind": c.kind, "bias_shift": float(np.abs(comp).max()) if removed.size else 0.0,
                             "taps": list(k)}
            return
        w2 = w.reshape(w.shape[0], -1)
        w_t = np.hstack([w2, b[:, None]])                     # (out, C+1)
        beta = _solve(spp, spo, w_t, ridge)                   # (k+1, out)
        apply(c, beta[:-1].T, beta[-1])
        stats[c.node] = {"kind": c.kind, "inputs": int(len(c.sel_in))}

    if mode == "oneshot":
        sess = _session(with_outputs(original, {c.tensor for c in consumers}))
        names = sorted({c.tensor for c in consumers})
        acc: dict[str, np.ndarray] = {}
        for f in feeds:
            for n, x in zip(names, sess.run(names, f), strict=True):
                xa = _aug(_flat(x))
                acc[n] = acc.get(n, 0) + xa @ xa.T
        for c in consumers:
            s = acc[c.tensor]
            idx = np.append(c.sel_in, s.shape[0] - 1)
            refit(c, s[np.ix_(idx, idx)], s[idx], s[-1, :-1] / s[-1, -1])
    else:
        osess = _session(with_outputs(original, {c.tensor for c in consumers}))
        for start in range(0, len(consumers), chunk):
            part = consumers[start:start + chunk]
            names = sorted({c.tensor for c in part})
            psess = _session(with_outputs(out, names))
            spp: dict[str, np.ndarray] = {}
            spo: dict[str, np.ndarray] = {}
            mean_o: dict[str, np.ndarray] = {}
            count = 0
            for f in feeds:
                xos = osess.run(names, f)
                xps = psess.run(names, f)
                for n, xo, xp in zip(names, xos, xps, strict=True):
                    xpa, xoa = _aug(_flat(xp)), _aug(_flat(xo))
                    spp[n] = spp.get(n, 0) + xpa @ xpa.T
                    spo[n] = spo.get(n, 0) + xpa @ xoa.T
                    mean_o[n] = mean_o.get(n, 0) + xoa[:-1].sum(1)
                count += xoa.shape[1]
            for c in part:
                if spp[c.tensor].shape[0] != len(c.sel_in) + 1:
                    raise CompressionError(f"{c.node}: pruned input has {spp[c.tensor].shape[0] - 1} "
                                           f"channels, expected {len(c.sel_in)}")
                refit(c, spp[c.tensor], spo[c.tensor], mean_o[c.tensor] / count)
    logger.info("reconstructed %s consumer layers (%s)", len(stats), mode)
    return out, stats
