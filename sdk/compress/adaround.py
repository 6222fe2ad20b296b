"""Block reconstruction of a QDQ INT8 model: learned weight rounding (AdaRound) and input
ranges, block by block against the FP32 model (extra ``train``).

A *block* is one Conv and the activation that follows it (SiLU as ``Sigmoid`` + ``Mul``, or
Relu). Blocks are visited in graph order, in one forward pass over the calibration frames
that runs the FP32 model and the fake-quantized one (:func:`sdk.compress.qat.fake_quant_module`,
which computes what the QDQ graph computes) side by side. For each block:

* its input is the fake-quantized network's tensor, produced by the blocks already
  reconstructed (AIMET's AdaRound takes the quantized model's input too); its target is the
  FP32 network's block output on the same frame;
* the weights are ``s * clamp(floor(W / s) + h(V), -127, 127)`` with the rectified sigmoid
  ``h(V) = clip(sigmoid(V) * 1.2 - 0.1, 0, 1)`` (Nagel et al. 2020), ``V`` initialised to the
  fractional part; the loss is the block output's squared error (summed over channels, as
  AIMET does) plus ``reg * sum(1 - |2 h(V) - 1| ** beta)``, ``beta`` annealed from 20 to 2
  after a warm-up without it, so that every ``h`` ends at 0 or 1;
* the scale of the block's input grid is learned with it (LSQ-style: straight-through
  rounding, gradient to the scale; parameterised as ``s0 * exp(u)``) when that grid belongs to
  this tensor alone and every reader of the tensor is a block not yet reconstructed; the
  bias is learned too (it absorbs the mean shift, as bias correction does);
* each step sees a few frames and a random spatial crop of the output (the input is padded
  once, so a crop computes exactly what the full convolution computes there), which keeps a
  few hundred steps per block cheap on two cores.

The learned rounding is kept only where its block error (full frames) is below that of the
rounding the QDQ graph already holds; the integer weights, input scales and re-quantized int32
biases are written back into the QDQ graph, which stays what onnxruntime fuses into
QLinearConv. Gemm / MatMul blocks are left as they are.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from sdk.compress.calibration import progress_enabled
from sdk.errors import require

logger = logging.getLogger("edgewise")

__all__ = ["ReconstructReport", "reconstruct_qdq"]

GAMMA, ZETA = -0.1, 1.1


@dataclass
class ReconstructReport:
    """Per block: output error (relative MSE on the calibration frames) with nearest rounding
    at the graph's scales, with the rounding the graph held, and after reconstruction."""

    blocks: dict[str, dict[str, float]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        b = list(self.blocks.values())
        mean = (lambda k: float(np.mean([r[k] for r in b])) if b else None)
        return {"blocks": len(b), "error_nearest": mean("error_nearest"), "error_before": mean("error_before"),
                "error_after": mean("error_after"), "improved": sum(r["error_after"] < r["error_before"] for r in b),
                "scales_learned": sum(bool(r.get("scale_learned")) for r in b)}


def _block_nodes(g: onnx.GraphProto, conv: onnx.NodeProto, cons: Mapping[str, list]) -> list[onnx.NodeProto]:
    """The conv, and the SiLU (Sigmoid + Mul) or Relu reading its output alone."""
    y = conv.output[0]
    c = cons.get(y, [])
    outs = {o.name for o in g.output}
    if y in outs:
        return [conv]
    if len(c) == 1 and c[0].op_type == "Relu":
        return [conv, c[0]]
    if len(c) == 2 and {n.op_type for n in c} == {"Sigmoid", "Mul"}:
        sig = next(n for n in c if n.op_type == "Sigmoid")
        mul = next(n for n in c if n.op_type == "Mul")
        if sorted(mul.input) == sorted([y, sig.output[0]]) and cons.get(sig.output[0], []) == [mul]:
            return [conv, sig, mul]
    return [conv]


def reconstruct_qdq(float_model: onnx.ModelProto, qdq: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]],
                    *, iters: int = 300, batch: int = 4, crop: int = 32, lr: float = 1e-2, reg: float = 0.01,
                    warmup: float = 0.2, learn_ranges: bool = True, weight_bits: int = 8, max_frames: int = 32,
                    max_blocks: int | None = None, seed: int = 0, progress: bool = False) -> ReconstructReport:
    """Reconstruct ``qdq`` (in place) block by block against ``float_model`` on ``feeds``
    (see the module docstring); ``qdq`` must have been quantized from ``float_model``.
    ``max_blocks``: only the first blocks (the rest keep their rounding)."""
    torch = require("torch", "train", "AdaRound block reconstruction")
    F = torch.nn.functional
    if not feeds:
        raise ValueError("reconstruct_qdq needs calibration feeds, got 0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)       # many small convolutions: a second thread mostly waits (10x slower when loaded)
    try:
        return _reconstruct_all(torch, F, float_model, qdq, feeds, iters, batch, crop, lr, reg, warmup, learn_ranges,
                                weight_bits, max_frames, max_blocks, seed, progress)
    finally:
        torch.set_num_threads(threads)


def _reconstruct_all(torch, F, float_model, qdq, feeds, iters, batch, crop, lr, reg, warmup, learn_ranges,
                     weight_bits, max_frames, max_blocks, seed, progress) -> ReconstructReport:
    from tqdm.auto import tqdm

    from sdk.compress.onnx_torch import onnx_to_torch
    from sdk.compress.qat import _qdq_grids, fake_quant_module
    from sdk.compress.qdq_refine import _activation_params, _inits, _weighted_layers
    from sdk.compress.weight_rounding import qrange

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    g = float_model.graph
    student = fake_quant_module(float_model, qdq)
    teacher = onnx_to_torch(float_model)
    acts, _ = _qdq_grids(qdq)
    qinits, finits = _inits(qdq), _inits(float_model)
    layers = {L.node.name: L for L in _weighted_layers(qdq, finits) if L.node.op_type == "Conv"}
    scale_of = {t: s for s, ts in _activation_params(qdq).items() for t in ts}
    shared = {s for s, ts in _activation_params(qdq).items() if len(ts) > 1}
    cons: dict[str, list] = {}
    for n in g.node:
        for t in n.input:
            cons.setdefault(t, []).append(n)
    lo_q, hi_q = qrange(weight_bits)
    names = student.input_names
    if len(names) != 1:
        raise ValueError(f"reconstruct_qdq supports single-input models, got inputs {names}")
    x0 = torch.from_numpy(np.concatenate([np.asarray(f[names[0]], np.float32) for f in feeds[:max_frames]]))
    env_s = {names[0]: student.tensor_hook(names[0], x0), "raw:" + names[0]: x0}
    env_t = {names[0]: x0}
    last_use = {t: i for i, (n, _) in enumerate(student.nodes) for t in n.input}
    rep = ReconstructReport()
    done: set[str] = set()
    learned_scale: dict[str, float] = {}
    block_of = {n.name: _block_nodes(g, n, cons) for n, _ in student.nodes if n.name in layers}
    block_of = dict(list(block_of.items())[:max_blocks])
    need_raw = frozenset(n.input[0] for n in g.node if n.name in block_of)
    attrs = {n.name: a for n, a in student.nodes}
    skip: set[str] = set()
    outputs = {o.name for o in g.output}
    bar = tqdm(total=len(block_of), desc="block reconstruction (AdaRound)", unit="block",
               disable=not progress_enabled(progress))
    with torch.no_grad():
        for i, (node, at) in enumerate(student.nodes):
            if len(done) == len(block_of):
                break
            if node.name in skip:
                continue
            if node.name not in block_of:
                env_s.update(_run_nodes(student, [(node, at)], env_s, hook=True, need_raw=need_raw))
                env_t.update(_run_nodes(teacher, [(node, at)], env_t))
            else:
                blk = block_of[node.name]
                blk_at = [(n, attrs[n.name]) for n in blk]
                t_out = _run_nodes(teacher, blk_at, env_t)
                x_name = node.input[0]
                raw = env_s.get("raw:" + x_name, env_s[x_name])
                with torch.enable_grad():
                    rep.blocks[node.name] = _reconstruct(
                        torch, F, student, node, at, blk, layers[node.name], raw, t_out[blk[-1].output[0]],
                        acts, x_name, scale_of, shared, cons, set(block_of) - done, learned_scale, qinits,
                        (lo_q, hi_q), {"iters": iters, "batch": batch, "crop": crop, "lr": lr, "reg": reg,
                                       "warmup": warmup, "learn_ranges": learn_ranges}, rng)
                done.add(node.name)
                logger.debug("block %s (%d/%d): %s", node.name, len(done), len(block_of), rep.blocks[node.name])
                if x_name in learned_scale:           # later readers see the new grid
                    sc, z = learned_scale[x_name], acts[x_name][1]
                    env_s[x_name] = (torch.clamp(torch.round(raw / sc) + z, 0, 255) - z) * sc
                env_s.update(_run_nodes(student, blk_at, env_s, hook=True, need_raw=need_raw))
                env_t.update(t_out)
                skip.update(n.name for n in blk[1:])
                bar.update(1)
            for env in (env_s, env_t):
                for t in [t for t in env if last_use.get(t.removeprefix("raw:"), -1) <= i]:
                    if t.removeprefix("raw:") not in outputs and t not in names:
                        del env[t]
    bar.close()
    _write_back(student, {n.name: n for n in g.node}, qinits, layers, rep, learned_scale, scale_of)
    logger.info("block reconstruction: %s", rep.summary())
    return rep


def _run_nodes(module: Any, nodes: Sequence[tuple[onnx.NodeProto, dict]], env: Mapping[str, Any],
               hook: bool = False, need_raw: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Outputs of ``nodes`` (with their attributes) run in order on ``env``, through
    ``module``'s tensor hook if asked; the unhooked value of a tensor in ``need_raw`` is kept
    as ``"raw:<name>"``."""
    local = dict(env)
    out = {}
    for n, at in nodes:
        ins = [module._t(local, t) if t else None for t in n.input]
        for name, val in zip(n.output, module._op(n, at, ins), strict=False):  # optional outputs
            if name in need_raw:
                out["raw:" + name] = val
            local[name] = out[name] = module.tensor_hook(name, val) if hook else val
    return out


def _reconstruct(torch, F, student, node, at, blk, L, raw, target, acts, x_name, scale_of, shared, cons, pending,
                 learned_scale, qinits, qr, opt_kw, rng) -> dict[str, float]:
    """Learn one block's rounding (and input scale, bias); sets the student's weight and bias.
    ``pending``: the blocks not reconstructed yet (this one included)."""
    lo_q, hi_q = qr
    iters, batch, crop, lr, reg, warmup = (opt_kw[k] for k in ("iters", "batch", "crop", "lr", "reg", "warmup"))
    wkey = student.param_of[node.input[1]]
    bkey = student.param_of.get(node.input[2]) if len(node.input) > 2 else None
    w_float = torch.from_numpy(np.array(student.consts[L.w_float], np.float32))
    s_w = torch.from_numpy(numpy_helper.to_array(qinits[L.w_scale]).astype(np.float32).reshape(-1, 1, 1, 1))
    w_held = student.params[wkey].detach().clone()          # the graph's own rounding (dequantized)
    b_held = student.params[bkey].detach().clone() if bkey else None
    grid = acts.get(x_name)
    sname = scale_of.get(x_name)
    learn_s = bool(opt_kw["learn_ranges"] and grid is not None and sname is not None and sname not in shared
                   and all(c.name in pending for c in cons.get(x_name, [])))
    z = grid[1] if grid else 0
    u = torch.zeros((), requires_grad=learn_s)
    s0 = grid[0] if grid else 1.0

    def quant_in(x):
        if grid is None:
            return x
        s = s0 * torch.exp(u)
        v = x / s
        q = torch.clamp(v + (torch.round(v) - v).detach() + z, 0, 255)
        return (q - z) * s

    k = len(at.get("kernel_shape", w_float.shape[2:]))
    pads = list(at.get("pads", [0] * 2 * k))
    stride, dil, groups = at.get("strides", [1] * k), at.get("dilations", [1] * k), at.get("group", 1)
    pp = []
    for j in reversed(range(k)):
        pp += [pads[j], pads[j + k]]
    floor = torch.floor(w_float / s_w)
    rest = (w_float / s_w - floor).clamp(1e-4, 1 - 1e-4)
    V = torch.log((rest - GAMMA) / (ZETA - rest)).requires_grad_(True)   # h(V) = rest
    bias = (b_held.clone() if b_held is not None else None)
    if bias is not None:
        bias.requires_grad_(True)

    def h():
        return torch.clamp(torch.sigmoid(V) * (ZETA - GAMMA) + GAMMA, 0, 1)

    # zero is on every grid (integer zero point), so padding before quantizing is the same as after
    padded = F.pad(raw, pp) if any(pp) else raw

    def forward(x, w, b, window=None):
        if window is not None:
            (y0, x0, co_h, co_w) = window
            ih, iw = (co_h - 1) * stride[0] + (w.shape[2] - 1) * dil[0] + 1, (co_w - 1) * stride[1] + \
                (w.shape[3] - 1) * dil[1] + 1
            x = x[:, :, y0 * stride[0]:y0 * stride[0] + ih, x0 * stride[1]:x0 * stride[1] + iw]
        y = F.conv2d(quant_in(x), w, b, stride=stride, dilation=dil, groups=groups)
        return _tail(student, blk, y)

    def err(w, b) -> float:
        with torch.no_grad():
            d = sum(float(((forward(padded[j:j + 8], w, b) - target[j:j + 8]) ** 2).sum())
                    for j in range(0, len(padded), 8))
        return d / max(float((target ** 2).sum()), 1e-12)

    nearest = torch.clamp(torch.round(w_float / s_w), lo_q, hi_q) * s_w
    info = {"error_nearest": err(nearest, b_held), "error_before": err(w_held, b_held)}
    u_before = float(u.detach())
    params = [{"params": [V], "lr": lr}]
    if bias is not None and b_held is not None:
        params.append({"params": [bias], "lr": lr * 0.1 * float(b_held.abs().mean() + 1e-3)})
    if learn_s:
        params.append({"params": [u], "lr": lr * 0.1})
    opt = torch.optim.Adam(params)
    n, ho, wo = raw.shape[0], target.shape[2], target.shape[3]
    for it in range(iters):
        idx = torch.from_numpy(rng.choice(n, size=min(batch, n), replace=False))
        ch, cw = min(crop, ho), min(crop, wo)
        y0, x0 = int(rng.integers(0, ho - ch + 1)), int(rng.integers(0, wo - cw + 1))
        w = s_w * torch.clamp(floor + h(), lo_q, hi_q)
        out = forward(padded[idx], w, bias, (y0, x0, ch, cw))
        loss = ((out - target[idx][:, :, y0:y0 + ch, x0:x0 + cw]) ** 2).sum(1).mean()
        t = it / max(iters - 1, 1)
        if t >= warmup:
            beta = 20 + (2 - 20) * (t - warmup) / max(1 - warmup, 1e-9)
            loss = loss + reg * (1 - (2 * h() - 1).abs().pow(beta)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        w_new = s_w * torch.clamp(floor + (h() >= 0.5).float(), lo_q, hi_q)
        b_new = bias.detach() if bias is not None else None
        e_new = err(w_new, b_new)
        if e_new < info["error_before"]:
            student.params[wkey].copy_(w_new)
            if bkey:
                student.params[bkey].copy_(b_new)
            info["error_after"] = e_new
            if learn_s and float(u.detach()) != u_before:
                learned_scale[x_name] = float(s0 * math.exp(float(u.detach())))
                acts[x_name] = (learned_scale[x_name], z)
                info["scale_learned"] = learned_scale[x_name] / s0
        else:
            info["error_after"] = info["error_before"]
    return info


def _tail(module: Any, blk: Sequence[onnx.NodeProto], y: Any) -> Any:
    """The block's activation after its conv output ``y``, with the QDQ graph's grids on the
    intermediate tensors (the block output itself is compared before its own grid)."""
    if len(blk) == 1:
        return y
    hook = module.tensor_hook
    yq = hook(blk[0].output[0], y)
    if blk[1].op_type == "Relu":
        return module._op(blk[1], {}, [yq])[0]
    sig = hook(blk[1].output[0], module._op(blk[1], {}, [yq])[0])
    return yq * sig


def _write_back(student, fnodes, inits, layers, rep, learned_scale, scale_of) -> None:
    """Integer weights, learned input scales (zero points stay) and re-quantized int32 biases
    into the QDQ graph's initializers ``inits``."""
    from sdk.compress.qdq_refine import _set

    for x_name, s in learned_scale.items():
        _set(inits, scale_of[x_name], np.float32(s))
    for name, L in layers.items():
        if name not in rep.blocks:
            continue
        node = fnodes[name]
        s_w = numpy_helper.to_array(inits[L.w_scale]).astype(np.float64).ravel()
        w = student.params[student.param_of[node.input[1]]].detach().numpy().astype(np.float64)
        q = np.rint(w / s_w.reshape(-1, *[1] * (w.ndim - 1)))
        _set(inits, L.w_q, q.astype(np.int8))
        bkey = student.param_of.get(node.input[2]) if len(node.input) > 2 else None
        if bkey is None:
            continue
        b = student.params[bkey].detach().numpy().astype(np.float64)
        if L.b_q is None:
            if node.input[2] in inits:
                _set(inits, node.input[2], b)
            continue
        a_scale = float(numpy_helper.to_array(inits[L.act_scale]).ravel()[0])
        b_scale = a_scale * s_w
        _set(inits, L.b_q, np.clip(np.rint(b / b_scale), -(2 ** 31), 2 ** 31 - 1).astype(np.int32))
        old = numpy_helper.to_array(inits[L.b_scale])
        _set(inits, L.b_scale, b_scale.astype(np.float32).reshape(old.shape) if old.size == b_scale.size
             else np.float32(b_scale[0]))
