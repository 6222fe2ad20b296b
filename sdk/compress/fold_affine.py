"""Folding constant scale-and-shift nodes into the convolutions next to them (``fold_affine``).

Paddle's exporter writes PP-LCNetV3's learnable affine blocks (``y = a * x + b``, one scalar
pair per activation) as a ``Mul`` and an ``Add`` by constants, before and after every
activation: PP-OCRv4 det has 86 ``Mul`` and 89 ``Add`` nodes around 62 convolutions.
onnxruntime's own Conv+Mul / Conv+Add fusions do not take them (the constant is the ``Mul``'s
first input, and the ``Add`` follows the ``Mul``), so each is a pass over a full feature map:
in the INT8 model, a ``QLinearMul`` / ``QLinearAdd`` with its own re-quantization, about a
third of the run time. Both folds are exact:

* ``Conv -> Mul(c) -> Add(d)`` (either may be missing, in any order; ``c``, ``d`` scalars or
  one value per output channel; a ``BatchNormalization`` is one such pair), also after an
  ungrouped ``ConvTranspose``: ``W' = c W``, ``bias' = c bias + d``;
* ``Mul(a) -> Add(b) -> Conv`` with scalar ``a``, ``b`` and a convolution without padding
  (a padded border would see ``b`` instead of 0): ``W' = a W``,
  ``bias' = bias + b * sum(W)`` per output channel.

The decomposed hard-swish ``x * Clip(x + 3, 0, 6) / 6`` becomes ``x * HardSigmoid(x)``
(``alpha = 1/6``, ``beta = 0.5``; the same function), two nodes fewer.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from pydantic import Field

from sdk.compress.base import Pass, PassConfig, PassContext, PassResult, register_pass
from sdk.compress.graph_prep import load_model, save_model

__all__ = ["FoldAffine", "fold_affine"]

logger = logging.getLogger("edgewise")


class _Graph:
    """Constants (initializers and ``Constant`` nodes), producers and consumers of a graph."""

    def __init__(self, model: onnx.ModelProto):
        self.g = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in self.g.initializer}
        for n in self.g.node:
            if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self.refresh()

    def refresh(self) -> None:
        self.prod = {o: n for n in self.g.node for o in n.output}
        self.cons: dict[str, list[onnx.NodeProto]] = {}
        for n in self.g.node:
            for t in n.input:
                self.cons.setdefault(t, []).append(n)
        self.outputs = {o.name for o in self.g.output}

    def only_reader(self, tensor: str) -> onnx.NodeProto | None:
        c = self.cons.get(tensor, [])
        return c[0] if len(c) == 1 and tensor not in self.outputs else None

    def const_operand(self, node: onnx.NodeProto, other: str) -> np.ndarray | None:
        """The constant input of a binary ``node`` whose other input is ``other``."""
        if len(node.input) != 2 or other not in node.input:
            return None
        k = 1 - list(node.input).index(other)
        if node.input[k] == other:
            return None
        return self.consts.get(node.input[k])

    def set_init(self, name: str, arr: np.ndarray) -> str:
        """A new initializer ``name`` (made unique) holding ``arr``."""
        base, i = name, 0
        taken = set(self.consts) | set(self.prod)
        while name in taken:
            i += 1
            name = f"{base}_{i}"
        self.g.initializer.append(numpy_helper.from_array(arr, name))
        self.consts[name] = arr
        return name

    def bypass(self, node: onnx.NodeProto, src: str) -> None:
        """Remove ``node`` (one output), its readers reading ``src`` instead."""
        out = node.output[0]
        for n in self.g.node:
            for k, t in enumerate(n.input):
                if t == out:
                    n.input[k] = src
        self.g.node.remove(node)
        self.refresh()


def _per_channel(v: np.ndarray, channels: int) -> np.ndarray | None:
    """``v`` as one value per channel of an NCHW tensor, or None when it broadcasts otherwise."""
    v = np.asarray(v, np.float64)
    if v.size == 1:
        return np.full(channels, float(v.ravel()[0]))
    if v.size == channels and (v.ndim == 1 and channels == 1 or v.ndim >= 3 and v.shape[-3] == channels
                               and v.shape[-1] == v.shape[-2] == 1):
        return v.ravel()
    return None


def _conv_params(gr: _Graph, conv: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray] | None:
    """(weights with output channels first, bias) of a Conv or an ungrouped ConvTranspose."""
    if conv.op_type not in ("Conv", "ConvTranspose") or conv.input[1] not in gr.consts:
        return None
    w = np.asarray(gr.consts[conv.input[1]], np.float64)
    if conv.op_type == "ConvTranspose":
        at = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        if at.get("group", 1) != 1:
            return None
        w = np.swapaxes(w, 0, 1)                  # (Cin, Cout, k...) -> (Cout, Cin, k...)
    if len(conv.input) > 2 and conv.input[2]:
        if conv.input[2] not in gr.consts:
            return None
        return w, np.asarray(gr.consts[conv.input[2]], np.float64)
    return w, np.zeros(w.shape[0])


def _write_conv(gr: _Graph, conv: onnx.NodeProto, w: np.ndarray, b: np.ndarray) -> None:
    if conv.op_type == "ConvTranspose":
        w = np.swapaxes(w, 0, 1)
    wname = gr.set_init(conv.input[1] + "_folded", w.astype(np.float32))
    bname = gr.set_init((conv.input[2] if len(conv.input) > 2 and conv.input[2] else conv.name + "_bias")
                        + "_folded", b.astype(np.float32))
    x = conv.input[0]
    del conv.input[:]
    conv.input.extend([x, wname, bname])


def _scale_shift(gr: _Graph, node: onnx.NodeProto, x: str, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) per channel when ``node`` computes ``scale * x + shift`` with constants."""
    if node.op_type == "BatchNormalization":
        if len(node.output) != 1 or node.input[0] != x or not all(t in gr.consts for t in node.input[1:5]):
            return None
        gamma, beta, mean, var = (np.asarray(gr.consts[t], np.float64).ravel() for t in node.input[1:5])
        eps = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon"), 1e-5)
        if gamma.size != channels:
            return None
        s = gamma / np.sqrt(var + eps)
        return s, beta - mean * s
    if node.op_type not in ("Mul", "Add"):
        return None
    v = gr.const_operand(node, x)
    v = _per_channel(v, channels) if v is not None else None
    if v is None:
        return None
    return (v, np.zeros(channels)) if node.op_type == "Mul" else (np.ones(channels), v)


def _fold_after(gr: _Graph) -> int:
    """Conv / ConvTranspose -> Mul(c) / Add(d) / BatchNormalization into the conv; returns how
    many nodes went."""
    folded = 0
    for conv in [n for n in gr.g.node if n.op_type in ("Conv", "ConvTranspose")]:
        while True:
            nxt = gr.only_reader(conv.output[0])
            params = _conv_params(gr, conv)
            if nxt is None or params is None:
                break
            w, b = params
            ss = _scale_shift(gr, nxt, conv.output[0], w.shape[0])
            if ss is None:
                break
            s, t = ss
            _write_conv(gr, conv, w * s.reshape(-1, *[1] * (w.ndim - 1)), b * s + t)
            out = nxt.output[0]
            gr.bypass(nxt, conv.output[0])
            # the conv now produces what the removed node did (keeps graph output names)
            if out in gr.outputs:
                _rename(gr, conv.output[0], out)
            folded += 1
    return folded


def _rename(gr: _Graph, old: str, new: str) -> None:
    for n in gr.g.node:
        for k, t in enumerate(n.output):
            if t == old:
                n.output[k] = new
        for k, t in enumerate(n.input):
            if t == old:
                n.input[k] = new
    gr.refresh()


def _unpadded(conv: onnx.NodeProto) -> bool:
    at = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    pad = at.get("auto_pad", b"NOTSET")
    pad = pad.decode() if isinstance(pad, bytes) else pad
    return pad == "VALID" or (pad == "NOTSET" and not any(at.get("pads", [])))


def _fold_before(gr: _Graph) -> int:
    """Mul(a) -> Add(b) -> unpadded Conv, scalars, into the conv."""
    folded = 0
    for conv in [n for n in gr.g.node if n.op_type == "Conv"]:
        while _fold_one_before(gr, conv):
            folded += 1
    return folded


def _fold_one_before(gr: _Graph, conv: onnx.NodeProto) -> bool:
    params = _conv_params(gr, conv)
    prev = gr.prod.get(conv.input[0])
    if params is None or prev is None or prev.op_type not in ("Mul", "Add") or not _unpadded(conv):
        return False
    if gr.only_reader(prev.output[0]) is not conv:
        return False
    src = next((t for t in prev.input if t not in gr.consts), None)
    if src is None:
        return False
    v = gr.const_operand(prev, src)
    if v is None or np.asarray(v).size != 1:
        return False
    a = float(np.asarray(v).ravel()[0])
    w, b = params
    if prev.op_type == "Mul":
        w = w * a
    else:
        b = b + a * w.reshape(w.shape[0], -1).sum(1)
    _write_conv(gr, conv, w, b)
    gr.bypass(prev, src)
    return True


def _hardswish(gr: _Graph) -> int:
    """``x * Clip(x + 3, 0, 6) / 6`` -> ``x * HardSigmoid(x)``; returns how many."""
    return sum(_hardswish_at(gr, add) for add in [n for n in gr.g.node if n.op_type == "Add"])


def _is_const(gr: _Graph, node: onnx.NodeProto, other: str, value: float) -> bool:
    v = gr.const_operand(node, other)
    return v is not None and v.size == 1 and float(v.ravel()[0]) == value


def _hardswish_at(gr: _Graph, add: onnx.NodeProto) -> bool:
    x = next((t for t in add.input if t not in gr.consts), None)
    if x is None or not _is_const(gr, add, x, 3.0):
        return False
    clip = gr.only_reader(add.output[0])
    if clip is None or clip.op_type != "Clip" or len(clip.input) < 3:
        return False
    lo, hi = gr.consts.get(clip.input[1]), gr.consts.get(clip.input[2])
    if lo is None or hi is None or float(lo) != 0.0 or float(hi) != 6.0:
        return False
    mul = gr.only_reader(clip.output[0])
    if mul is None or mul.op_type != "Mul" or sorted(mul.input) != sorted([x, clip.output[0]]):
        return False
    div = gr.only_reader(mul.output[0])
    if div is None or div.op_type != "Div" or div.input[0] != mul.output[0] \
            or not _is_const(gr, div, mul.output[0], 6.0):
        return False
    hs = helper.make_node("HardSigmoid", [x], [clip.output[0]], name=(add.name or clip.output[0]) + "_hsig",
                          alpha=1.0 / 6.0, beta=0.5)
    idx = list(gr.g.node).index(add)
    gr.g.node.remove(add)
    gr.g.node.remove(clip)
    gr.g.node.insert(idx, hs)
    out = div.output[0]
    gr.g.node.remove(div)
    mul.output[0] = out
    gr.refresh()
    return True


def _prune(gr: _Graph) -> None:
    used = {t for n in gr.g.node for t in n.input} | gr.outputs
    for n in [n for n in gr.g.node if n.op_type == "Constant" and n.output[0] not in used]:
        gr.g.node.remove(n)
    for t in [t for t in gr.g.initializer if t.name not in used]:
        gr.g.initializer.remove(t)


def fold_affine(model: onnx.ModelProto, hardswish: bool = True) -> dict[str, int]:
    """Fold constant ``Mul``/``Add`` nodes into neighbouring convolutions and rewrite the
    decomposed hard-swish (see the module docstring), in place. Returns the counts."""
    gr = _Graph(model)
    counts = {"after_conv": _fold_after(gr), "before_conv": _fold_before(gr),
              "hardswish": _hardswish(gr) if hardswish else 0}
    _prune(gr)
    return counts


@register_pass
class FoldAffine(Pass):
    """Exact folding of constant scale/shift nodes into convolutions (PP-LCNet affine blocks)."""

    name = "fold_affine"

    class Config(PassConfig):
        hardswish: bool = Field(True, description="also rewrite x * Clip(x + 3, 0, 6) / 6 as x * HardSigmoid(x)")

    config: Config  # the validated config (narrows Pass.config for the type checker)

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        model = load_model(model_in, check=False)
        counts = fold_affine(model, hardswish=self.config.hardswish)
        save_model(model, model_out)
        logger.info("fold_affine on %s: %s", Path(model_in).name, counts)
        return PassResult(Path(model_out), dict(counts))


def foldable(model: onnx.ModelProto) -> Mapping[str, Any]:
    """How many nodes :func:`fold_affine` would remove (on a copy)."""
    copy = onnx.ModelProto.FromString(model.SerializeToString())
    return fold_affine(copy)
