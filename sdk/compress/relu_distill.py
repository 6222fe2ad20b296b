"""The ``relu_distill`` pass: swap SiLU for ReLU and distill the result onto the original.

:mod:`sdk.compress.relu_swap` explains why (on CPU, INT8 pays for ReLU networks and not for
SiLU ones). This pass makes the swap usable: the input model is the teacher, the swapped copy
the student, both run in PyTorch through :func:`~sdk.compress.onnx_torch.onnx_to_torch`, and
the student's weights are trained on the unlabelled calibration data to reproduce

* the input of every swapped activation (the convolution outputs: mean squared error relative
  to the teacher's energy, averaged over the layers; a ReLU cannot reproduce SiLU's negative
  tail, but the next convolution can make up for it, so these are the targets it can reach), and
* the teacher's outputs: for a detector's ``[batch, anchors, 4 + 1 + classes]`` output with
  probabilities after the box (YOLOX layout), box L1 weighted by the teacher's confidence
  plus binary cross-entropy to the teacher's objectness and class probabilities; otherwise
  relative MSE.

The swap is annealed: for the first ``anneal`` share of the steps each activation computes
``(1 - a) * silu(x) + a * relu(x)`` with ``a`` rising from 0 to 1, so the student starts as the
teacher and moves to ReLU while it learns; the rest of the steps train the pure ReLU network.

Raw frames (:class:`~sdk.compress.frames.FrameCalibration`) are augmented every step: random
crops of 50-100% of the side, mirroring and brightness/contrast, letterboxed to the model's
input as the calibration does; other calibration data is used as given, mirrored. The graph
keeps its structure: the trained values are written back into the swapped ONNX graph.

Training is the slow part (YOLOX-nano, 600 steps of 8 frames at 256x416: about 10 minutes
on 2 cores), so the trained weights are cached in the run's :class:`Workspace` by the model's
weights and the pass config: the search trains once and reuses it for every input shape and
quantizer. Extra ``train`` (PyTorch).
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import numpy_helper
from pydantic import Field

from sdk.compress.base import Pass, PassConfig, PassContext, PassResult, register_pass
from sdk.compress.frames import _letterboxed  # the tensors FrameCalibration feeds the model
from sdk.compress.graph_prep import load_model, save_model
from sdk.compress.relu_swap import silu_pairs, swap_silu_for_relu
from sdk.errors import CompressionError, require

__all__ = ["ReluDistill", "ReluDistillConfig", "distill_relu"]

logger = logging.getLogger("edgewise")


class ReluDistillConfig(PassConfig):
    steps: int = Field(600, ge=1, description="training steps (one batch each)")
    lr: float = Field(2e-4, gt=0, description="AdamW learning rate, cosine-decayed to 0")
    batch_size: int = Field(8, ge=1, description="samples per step")
    feature_weight: float = Field(1.0, ge=0, description="weight of the per-activation feature term")
    anneal: float = Field(0.7, ge=0.0, le=1.0,
                          description="share of the steps over which each activation moves from SiLU to ReLU "
                                      "((1 - a) * silu(x) + a * relu(x), a rising linearly to 1); 0 = swap at "
                                      "once and train the ReLU network from the first step")
    output_loss: Literal["auto", "detection", "mse"] = Field(
        "auto", description="detection: YOLOX-layout box/objectness/class loss; mse: relative MSE; auto: "
                            "detection when the output looks like [batch, anchors, 5 + classes] probabilities")
    seed: int = Field(0, description="seed of the augmentation and sampling")
    threads: int = Field(0, ge=0, description="torch threads (0 = torch's default)")


def _weights_key(model: onnx.ModelProto, cfg: ReluDistillConfig) -> str:
    h = hashlib.sha256(cfg.model_dump_json().encode())
    for init in sorted(model.graph.initializer, key=lambda t: t.name):
        h.update(init.name.encode())
        h.update(init.raw_data or numpy_helper.to_array(init).tobytes())
    return h.hexdigest()


class _Samples:
    """Training inputs: augmented raw frames when the calibration holds them, else its tensors."""

    def __init__(self, calib: Any, model_path: Path, input_name: str, hw: tuple[int, int] | None, seed: int):
        self.rng = np.random.default_rng(seed)
        self.images = list(getattr(calib, "images", []) or [])
        self.hw = hw
        self.pad_value = int(getattr(calib, "pad_value", 114))
        self.scale = float(getattr(calib, "scale", 1.0))
        self.tensors: list[np.ndarray] = []
        if not (self.images and hw):
            self.images = []
            feeds = calib.for_model(model_path)
            self.tensors = [np.asarray(f.get(input_name, next(iter(f.values()))), np.float32) for f in feeds]
            if not self.tensors:
                raise CompressionError("relu_distill needs calibration data, got 0 samples")

    def batch(self, n: int) -> np.ndarray:
        return np.concatenate([self._one() for _ in range(n)])

    def _one(self) -> np.ndarray:
        rng = self.rng
        if not self.images:
            x = self.tensors[int(rng.integers(len(self.tensors)))]
            return np.ascontiguousarray(x[..., ::-1]) if x.ndim == 4 and rng.random() < 0.5 else x
        im = self.images[int(rng.integers(len(self.images)))]
        h, w = im.shape[:2]
        s = rng.uniform(0.5, 1.0)
        ch, cw = max(8, int(h * s)), max(8, min(w, int(w * s * rng.uniform(0.85, 1.15))))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = im[y0:y0 + ch, x0:x0 + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.clip(crop.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25), 0, 255)
        assert self.hw is not None
        return _letterboxed(np.ascontiguousarray(crop.astype(np.uint8)), self.hw, self.pad_value, self.scale)


def _is_detection(t: Any) -> bool:
    if t.dim() != 3 or t.shape[-1] < 6:
        return False
    probs = t[..., 4:]
    return bool(probs.min() >= 0.0 and probs.max() <= 1.0)


def _output_loss(torch: Any, o: Any, t: Any, detection: bool) -> Any:
    if not detection:
        return ((o - t) ** 2).mean() / ((t ** 2).mean() + 1e-6)
    eps = 1e-6

    def bce(p: Any, q: Any) -> Any:       # cross-entropy minus the teacher's entropy: 0 at p == q
        p = p.clamp(eps, 1 - eps)
        qc = q.clamp(eps, 1 - eps)
        return q * (torch.log(qc) - torch.log(p)) + (1 - q) * (torch.log(1 - qc) - torch.log(1 - p))

    obj_t = t[..., 4:5]
    w = obj_t * t[..., 5:].max(-1, keepdim=True).values
    box = (torch.abs(o[..., :4] - t[..., :4]) * w).sum() / (w.sum() + eps)
    obj = bce(o[..., 4:5], obj_t).mean()
    cls = (bce(o[..., 5:], t[..., 5:]) * obj_t).sum() / (obj_t.sum() * (t.shape[-1] - 5) + eps)
    return box + 5.0 * (obj + cls)


def distill_relu(model: onnx.ModelProto, model_path: Path, calib: Any, cfg: ReluDistillConfig,
                 progress: bool = False) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The ReLU student of ``model`` (saved at ``model_path``), trained on ``calib``; and a report."""
    torch = require("torch", "train", "distilling a SiLU network into a ReLU one")
    from sdk.compress.onnx_torch import onnx_to_torch, write_back
    from sdk.progress import progress_bar

    student_model, swapped = swap_silu_for_relu(model)
    if not swapped:
        raise CompressionError(f"{model_path.name}: no SiLU (x * sigmoid(x)) to swap for ReLU")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    # the student runs the original graph with each SiLU output blended towards ReLU of its input
    # (alpha[0] rises to 1 over the annealing steps); its weights go into the swapped graph at the end
    teacher, student = onnx_to_torch(model), onnx_to_torch(model)
    for p in teacher.parameters():
        p.requires_grad_(False)
    if len(student.input_names) != 1:
        raise CompressionError(f"relu_distill supports single-input models, got inputs {student.input_names}")
    pre_of = {mul.output[0]: sig.input[0] for sig, mul in silu_pairs(model)}
    pre_names = set(pre_of.values())        # the conv outputs the activations read: the feature targets
    alpha = [1.0 if cfg.anneal == 0 else 0.0]
    feats_t: dict[str, Any] = {}
    feats_s: dict[str, Any] = {}

    def teacher_hook(name: str, value: Any) -> Any:
        if name in pre_names:
            feats_t[name] = value
        return value

    def student_hook(name: str, value: Any) -> Any:
        if name in pre_names:
            feats_s[name] = value
        elif name in pre_of and alpha[0] > 0:
            relu = torch.relu(feats_s[pre_of[name]])
            value = relu if alpha[0] >= 1 else (1 - alpha[0]) * value + alpha[0] * relu
        return value

    teacher.tensor_hook, student.tensor_hook = teacher_hook, student_hook
    inp = next(i for i in model.graph.input if i.name == student.input_names[0])
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    hw = (int(dims[2]), int(dims[3])) if len(dims) == 4 and all(dims[2:]) else None
    samples = _Samples(calib, model_path, inp.name, hw, cfg.seed)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=0.0)
    detection: bool | None = None if cfg.output_loss == "auto" else cfg.output_loss == "detection"
    hist: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    bar = progress_bar(range(cfg.steps), desc="relu distillation", unit="step", enabled=progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        if cfg.anneal > 0:
            alpha[0] = min(1.0, (step + 1) / (cfg.anneal * cfg.steps))
        x = torch.from_numpy(samples.batch(cfg.batch_size))
        with torch.no_grad():
            t_out = teacher(x)
        s_out = student(x)
        t_outs = t_out if isinstance(t_out, tuple) else (t_out,)
        s_outs = s_out if isinstance(s_out, tuple) else (s_out,)
        if detection is None:
            detection = len(t_outs) == 1 and _is_detection(t_outs[0])
        out_loss = sum(_output_loss(torch, o, t, detection) for o, t in zip(s_outs, t_outs, strict=True))
        feat = sum(((feats_s[k] - feats_t[k]) ** 2).mean() / ((feats_t[k] ** 2).mean() + 1e-6) for k in pre_names)
        feat = feat / len(pre_names)
        loss = out_loss + cfg.feature_weight * feat
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append((float(out_loss.detach()), float(feat.detach())))
        if step % 10 == 0 and hasattr(bar, "set_postfix"):
            bar.set_postfix(output=f"{hist[-1][0]:.3g}", features=f"{hist[-1][1]:.3g}")
    trained = write_back(student, student_model)      # same initializers: the swap only rewires nodes
    k = min(10, len(hist))
    first, last = np.mean(hist[:k], 0), np.mean(hist[-k:], 0)
    report = {"swapped": len(swapped), "steps": cfg.steps, "seconds": round(time.perf_counter() - t0, 1),
              "trained_at": list(hw) if hw else None, "augmented_frames": len(samples.images),
              "output_loss": "detection" if detection else "mse",
              "loss_output": [round(float(first[0]), 4), round(float(last[0]), 4)],
              "loss_features": [round(float(first[1]), 4), round(float(last[1]), 4)]}
    return trained, report


@register_pass
class ReluDistill(Pass):
    """Swap every SiLU for ReLU and distill the student onto the input model (see the module
    docstring); needs calibration data (raw frames are augmented) and the ``train`` extra."""

    name = "relu_distill"
    Config = ReluDistillConfig

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        if ctx.calib is None:
            raise CompressionError("relu_distill needs calibration data (the unlabelled inputs it distills on)")
        model = load_model(model_in, check=False)
        cfg = self.config
        assert isinstance(cfg, ReluDistillConfig)
        key = ("relu_distill", _weights_key(model, cfg))
        cached = ctx.workspace.memo(key, lambda: _trained_values(model, Path(model_in), ctx, cfg))
        student, _ = swap_silu_for_relu(model)
        values, report = cached
        for init in student.graph.initializer:
            if init.name in values:
                init.CopyFrom(numpy_helper.from_array(values[init.name], init.name))
        save_model(student, model_out)
        return PassResult(Path(model_out), report)


def _trained_values(model: onnx.ModelProto, path: Path, ctx: PassContext, cfg: ReluDistillConfig
                    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    trained, report = distill_relu(model, path, ctx.calib, cfg, progress=ctx.progress)
    logger.info("relu_distill: %d SiLUs swapped, %d steps in %.0f s", report["swapped"], cfg.steps,
                report["seconds"])
    return {t.name: numpy_helper.to_array(t) for t in trained.graph.initializer}, report
