"""What each weighted layer sees: input means and second moments over calibration data.

For a layer ``y = W x`` the statistics of ``x`` decide which rounding of ``W`` hurts the
output least: ``H = E[x x^T]`` drives GPTQ and the choice of scales, ``E[x]`` the bias
correction (the mean output shift a rounding error causes, ``(W - Wq) E[x]``, is folded into
the bias). ``x`` is the layer's input *as the weight sees it*: the channel vector for a 1x1
Conv / Gemm / MatMul, the unfolded ``C x kh x kw`` patch for a kxk Conv (so padding zeros
count, as they do in the convolution). Grouped (depthwise) Convs get the per-channel mean
only: each output channel sees its own few inputs, so there is no shared ``H``.

All statistics come from one run of the model per calibration sample, with the layers'
inputs added as graph outputs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping

import numpy as np
import onnx
from onnx import helper

logger = logging.getLogger("edgewise")

__all__ = ["LayerSite", "LayerStats", "collect_layer_stats", "unfold"]

#: cap on the rows (positions) taken from one sample, so large feature maps stay cheap
MAX_ROWS_PER_SAMPLE = 8192
#: wider inputs get no second moment (float64 H of 4096 features is 128 MiB per layer)
MAX_HESSIAN_FEATURES = 4096


@dataclass(frozen=True)
class LayerSite:
    """How a weighted node reads its input ``tensor``."""

    node: str
    tensor: str
    kind: Literal["dense", "conv", "grouped"]   # dense: features on the last axis (Gemm, MatMul)
    kernel: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()


@dataclass
class LayerStats:
    mean: np.ndarray                 # E[x] per input feature (per channel for grouped convs)
    hessian: np.ndarray | None       # E[x x^T] over input features; None for grouped convs and
    #                                  inputs wider than MAX_HESSIAN_FEATURES
    rows: int                        # positions averaged over


def site_for(node: onnx.NodeProto, weight_shape: tuple[int, ...]) -> LayerSite | None:
    """The input statistics a node's weight needs, or None when this module cannot say."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Conv":
        k = tuple(int(d) for d in weight_shape[2:])
        if len(k) != 2 or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            return None
        group = int(attrs.get("group", 1))
        kind: Literal["conv", "grouped"] = "conv" if group == 1 else "grouped"
        return LayerSite(node.name, node.input[0], kind, k, tuple(attrs.get("pads", [0, 0, 0, 0])),
                         tuple(attrs.get("strides", [1, 1])), tuple(attrs.get("dilations", [1, 1])))
    if node.op_type == "Gemm" and not attrs.get("transA", 0):
        return LayerSite(node.name, node.input[0], "dense")
    if node.op_type == "MatMul" and len(weight_shape) == 2:
        return LayerSite(node.name, node.input[0], "dense")
    return None


def unfold(x: np.ndarray, kernel: tuple[int, ...], pads: tuple[int, ...], strides: tuple[int, ...],
           dilations: tuple[int, ...]) -> np.ndarray:
    """NCHW input -> ``[N * Hout * Wout, C * kh * kw]`` patches (im2col), in the order of a
    Conv weight flattened as ``[out, C, kh, kw]``."""
    kh, kw = kernel
    dh, dw = dilations
    t, l, b, r = pads if len(pads) == 4 else (0, 0, 0, 0)
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (eh, ew), axis=(2, 3))
    win = win[:, :, ::strides[0], ::strides[1], ::dh, ::dw]          # N, C, Ho, Wo, kh, kw
    n, c, ho, wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)


def _rows(x: np.ndarray, site: LayerSite, rng: np.random.Generator) -> np.ndarray:
    if site.kind == "dense":
        rows = x.reshape(-1, x.shape[-1])
    elif site.kind == "grouped" or site.kernel == (1, 1) and not any(site.pads) and site.strides == (1, 1):
        rows = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
    else:
        rows = unfold(x, site.kernel, site.pads, site.strides, site.dilations)
    if len(rows) > MAX_ROWS_PER_SAMPLE:
        rows = rows[rng.choice(len(rows), MAX_ROWS_PER_SAMPLE, replace=False)]
    return rows


def collect_layer_stats(model: onnx.ModelProto, sites: Iterable[LayerSite],
                        feeds: Iterable[Mapping[str, np.ndarray]], progress: bool = False
                        ) -> dict[str, LayerStats]:
    """Mean and second moment of every site's input over ``feeds``; keyed by node name."""
    import onnxruntime as ort

    from sdk.compress.prune_reconstruct import with_outputs
    from sdk.progress import progress_bar

    sites = list(sites)
    if not sites:
        return {}
    names = sorted({s.tensor for s in sites})
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(with_outputs(model, names), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    sums: dict[str, np.ndarray] = {}
    grams: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {s.node: 0 for s in sites}
    for feed in progress_bar(feeds, desc="layer statistics", unit="sample", enabled=progress):
        got = dict(zip(names, sess.run(names, dict(feed)), strict=True))
        for s in sites:
            rows = _rows(np.asarray(got[s.tensor], np.float64), s, rng)
            sums[s.node] = sums.get(s.node, 0) + rows.sum(0)
            if s.kind != "grouped" and rows.shape[1] <= MAX_HESSIAN_FEATURES:
                grams[s.node] = grams.get(s.node, 0) + rows.T @ rows
            counts[s.node] += len(rows)
    if not any(counts.values()):
        raise ValueError("no calibration samples: layer statistics need at least one")
    return {s.node: LayerStats(sums[s.node] / counts[s.node],
                               grams[s.node] / counts[s.node] if s.node in grams else None, counts[s.node])
            for s in sites if counts[s.node]}
