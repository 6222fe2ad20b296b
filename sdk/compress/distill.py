"""Knowledge distillation (extra ``train``): train a torch student against a teacher.

The teacher is an ONNX model run by onnxruntime (through :class:`sdk.runtime.Engine`) or a
``torch.nn.Module``. Its outputs on the training set are computed **once** and cached
(the data are fixed arrays, so they do not change between epochs). Losses:

* ``loss="kl"`` (classifiers): ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) +
  (1 - alpha) * CE(s, y)``; with ``y=None`` it is pure distillation (the KD term alone).
* ``loss="mse"`` (detectors, regressors, raw outputs): ``alpha * MSE(s, t) +
  (1 - alpha) * MSE(s, y)``; with ``y=None`` just ``MSE(s, t)``.
* feature hints: for each ``(student_module_name, teacher_tensor_name)`` the student's
  feature map goes through a learned 1x1 adapter (Linear for 2-D features) and is pulled
  towards the teacher's with MSE, weighted by ``hint_weight``. For an ONNX teacher the
  tensor is any intermediate tensor name of the graph; for a torch teacher a module name.

:func:`finetune_pruned_onnx` is the "recover after pruning" path: the pruned ONNX graph is
turned into a trainable module (:mod:`sdk.compress.onnx_torch`), distilled against the
original model's raw outputs on unlabeled inputs, and the trained weights are written back
into the same graph. :class:`Distill` is that as a recipe pass.

Everything is seeded (``seed``): same data and config give the same student.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping

import numpy as np
import onnx
from pydantic import Field

from ..errors import CompressionError, ModelLoadError, require
from .base import Pass, PassConfig, PassContext, PassResult, register_pass

logger = logging.getLogger("edgewise")

__all__ = ["DistillConfig", "DistillResult", "distill", "finetune_pruned_onnx", "Distill",
           "FinetuneConfig", "teacher_outputs"]


class DistillConfig(PassConfig):
    temperature: float = Field(4.0, gt=0, description="softmax temperature T of the KD term (loss='kl')")
    alpha: float = Field(0.7, ge=0.0, le=1.0,
                         description="weight of the teacher term; 1 - alpha goes to the label term")
    epochs: int = Field(10, ge=1, description="passes over the training set")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    batch_size: int = Field(128, ge=1, description="training (and teacher inference) batch size")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    loss: Literal["kl", "mse"] = Field("kl", description="kl: soft-label KD for classifiers; "
                                                         "mse: raw-output matching (detectors)")
    hints: list[tuple[str, str]] = Field(
        default_factory=list, description="(student module name, teacher tensor/module name) "
                                          "feature-hint pairs, each with a learned 1x1 adapter")
    hint_weight: float = Field(0.0, ge=0, description="weight of the feature-hint MSE terms")
    seed: int = Field(0, description="seed for initialisation, shuffling and adapters")
    progress: bool = Field(True, description="show a per-epoch progress bar (only on a terminal)")
    device: str = Field("cpu", description="torch device for the student, e.g. 'cpu' or 'cuda'")


@dataclass
class DistillResult:
    """The trained student (``torch.nn.Module``, eval mode) and one dict per epoch."""

    student: Any
    history: list[dict] = field(default_factory=list)
    onnx_path: Path | None = None


def _is_onnx(teacher: Any) -> bool:
    return isinstance(teacher, (str, Path, onnx.ModelProto, bytes))


def teacher_outputs(teacher: Any, X: np.ndarray, hint_names: Iterable[str] = (), batch_size: int = 128,
                    progress: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run ``teacher`` on every row of ``X``; return (first output, {hint name: tensor})."""
    hint_names = list(hint_names)
    if _is_onnx(teacher):
        from ..progress import progress_bar
        from ..runtime import Engine, EngineOptions

        if isinstance(teacher, (str, Path)):
            try:
                model = onnx.load(str(teacher))
            except Exception as exc:  # noqa: BLE001
                raise ModelLoadError(f"cannot read teacher ONNX model {teacher}: {exc}") from exc
        elif isinstance(teacher, bytes):
            model = onnx.load_from_string(teacher)
        else:
            model = teacher
        if hint_names:
            m2 = onnx.ModelProto()
            m2.CopyFrom(model)
            produced = {o for n in m2.graph.node for o in n.output}
            for h in hint_names:
                if h not in produced:
                    raise CompressionError(f"hint tensor {h!r} is not produced by any node of the teacher")
                m2.graph.output.append(onnx.helper.make_tensor_value_info(h, onnx.TensorProto.FLOAT, None))
            model = m2
        first_out = model.graph.output[0].name
        with Engine(model, EngineOptions(warmup=0)) as eng:
            dim0 = eng.inputs[0].shape[0] if eng.inputs[0].shape else None
            bs = batch_size if not isinstance(dim0, int) else dim0
            names = [first_out] + hint_names
            chunks: list[list[np.ndarray]] = [[] for _ in names]
            for i in progress_bar(range(0, len(X), bs), desc="teacher", enabled=progress, leave=False):
                outs = eng.run_list([np.ascontiguousarray(X[i:i + bs])], names)
                for c, o in zip(chunks, outs, strict=True):
                    c.append(o)
        res = [np.concatenate(c) for c in chunks]
        return res[0], dict(zip(hint_names, res[1:], strict=True))
    torch = require("torch", "train", "distillation")
    mods = dict(teacher.named_modules())
    feats: dict[str, list] = {h: [] for h in hint_names}
    handles = []
    for h in hint_names:
        if h not in mods:
            raise CompressionError(f"teacher has no module {h!r} for a feature hint")
        handles.append(mods[h].register_forward_hook(
            lambda _m, _i, out, h=h: feats[h].append(out.detach().cpu().numpy())))
    was = teacher.training
    teacher.eval()
    out = []
    try:
        with torch.no_grad():
            for i in range(0, len(X), batch_size):
                y = teacher(torch.from_numpy(np.ascontiguousarray(X[i:i + batch_size])))
                y = y[0] if isinstance(y, (tuple, list)) else y
                out.append(y.detach().cpu().numpy())
    finally:
        for hd in handles:
            hd.remove()
        teacher.train(was)
    return np.concatenate(out), {h: np.concatenate(v) for h, v in feats.items()}


def _check_xy(name: str, data: Any) -> tuple[np.ndarray, np.ndarray | None]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"{name} must be a tuple (X, y or None), got {type(data).__name__}")
    X, y = np.asarray(data[0]), data[1]
    if X.ndim < 2 or len(X) == 0:
        raise ValueError(f"{name} X must be an array of shape (N, ...) with N > 0, got shape {X.shape}")
    if X.dtype.kind == "f" and X.dtype != np.float32:
        X = X.astype(np.float32)
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(X):
            raise ValueError(f"{name}: X has {len(X)} rows but y has {len(y)}")
    return X, y


def distill(teacher: Any, student: Any, train: tuple, val: tuple | None = None,
            config: DistillConfig | None = None, loss_fn: Callable | None = None) -> DistillResult:
    """Train ``student`` (a ``torch.nn.Module``) against ``teacher`` on ``train=(X, y|None)``.

    ``loss_fn(student_out, teacher_out) -> scalar tensor`` replaces the teacher term (KL/MSE)
    when given: raw-output MSE treats every output equally, which for a detector means the
    thousands of background anchors; a task-aware loss (e.g. weighted by the teacher's
    objectness) is what recovers detections.

    ``val=(Xv, yv|None)`` adds per-epoch validation: accuracy (if labels) and agreement
    with the teacher's top-1 for ``loss="kl"``; MSE to the teacher for ``loss="mse"``.
    """
    torch = require("torch", "train", "distillation")
    from ..progress import progress_bar

    F = torch.nn.functional
    cfg = config or DistillConfig()
    X, y = _check_xy("train", train)
    if val is not None:
        Xv, yv = _check_xy("val", val)
    if cfg.loss == "kl" and y is not None and y.dtype.kind not in "iu":
        raise ValueError(f"loss='kl' needs integer class labels y, got dtype {y.dtype}")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % (2**32))
    dev = torch.device(cfg.device)
    hint_t = [t for _, t in cfg.hints]
    t0 = time.perf_counter()
    t_out, t_feats = teacher_outputs(teacher, X, hint_t, cfg.batch_size, cfg.progress)
    logger.info("teacher outputs for %s samples cached in %.1fs", len(X), time.perf_counter() - t0)
    if val is not None:
        tv_out, _ = teacher_outputs(teacher, Xv, (), cfg.batch_size, False)

    student.to(dev)
    mods = dict(student.named_modules())
    s_feats: dict[str, Any] = {}
    handles = []
    for s_name, _ in cfg.hints:
        if s_name not in mods:
            raise CompressionError(f"student has no module {s_name!r} for a feature hint "
                                   f"(modules: {sorted(k for k in mods if k)[:20]})")
        handles.append(mods[s_name].register_forward_hook(
            lambda _m, _i, out, n=s_name: s_feats.__setitem__(n, out)))

    # adapters: 1x1 conv (4-D features) or Linear (2-D), sized from one student forward pass
    adapters = torch.nn.ModuleList()
    if cfg.hints:
        with torch.no_grad():
            student.eval()
            student(torch.from_numpy(X[:1]).to(dev))
        for s_name, t_name in cfg.hints:
            sf, tf = s_feats[s_name], t_feats[t_name]
            if sf.dim() == 4:
                adapters.append(torch.nn.Conv2d(sf.shape[1], tf.shape[1], 1))
            else:
                adapters.append(torch.nn.Linear(sf.shape[1], tf.shape[1]))
        adapters.to(dev)

    params = list(student.parameters()) + list(adapters.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    Xt = torch.from_numpy(X)
    Tt = torch.from_numpy(np.ascontiguousarray(t_out.astype(np.float32)))
    Ft = [torch.from_numpy(np.ascontiguousarray(t_feats[t].astype(np.float32))) for _, t in cfg.hints]
    Yt = torch.from_numpy(y) if y is not None else None
    T = cfg.temperature
    history: list[dict] = []
    bar = progress_bar(range(cfg.epochs), desc="distill", enabled=cfg.progress)

    def first(o):
        return o[0] if isinstance(o, (tuple, list)) else o

    try:
        for epoch in bar:
            student.train()
            adapters.train()
            perm = torch.randperm(len(X), generator=gen)
            sums = {"loss": 0.0, "kd": 0.0, "task": 0.0, "hint": 0.0}
            te = time.perf_counter()
            for i in range(0, len(X), cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                xb, tb = Xt[idx].to(dev), Tt[idx].to(dev)
                s = first(student(xb))
                if loss_fn is not None:
                    kd = loss_fn(s, tb)
                    task = s.new_zeros(()) if Yt is None else (
                        F.cross_entropy(s, Yt[idx].long().to(dev)) if cfg.loss == "kl"
                        else F.mse_loss(s, Yt[idx].float().to(dev)))
                elif cfg.loss == "kl":
                    kd = F.kl_div(F.log_softmax(s / T, 1), F.softmax(tb / T, 1), reduction="batchmean") * T * T
                    task = F.cross_entropy(s, Yt[idx].long().to(dev)) if Yt is not None else s.new_zeros(())
                else:
                    kd = F.mse_loss(s, tb)
                    task = F.mse_loss(s, Yt[idx].float().to(dev)) if Yt is not None else s.new_zeros(())
                loss = (cfg.alpha * kd + (1 - cfg.alpha) * task) if Yt is not None else kd
                hint = s.new_zeros(())
                for k, (s_name, _) in enumerate(cfg.hints):
                    hint = hint + F.mse_loss(adapters[k](s_feats[s_name]), Ft[k][idx].to(dev))
                if cfg.hints:
                    loss = loss + cfg.hint_weight * hint
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n = len(idx)
                for key, v in (("loss", loss), ("kd", kd), ("task", task), ("hint", hint)):
                    sums[key] += float(v.detach()) * n
            rec: dict[str, Any] = {"epoch": epoch + 1, **{k: v / len(X) for k, v in sums.items()},
                                   "seconds": time.perf_counter() - te}
            if val is not None:
                rec.update(_validate(student, Xv, yv, tv_out, cfg, dev, torch))
            history.append(rec)
            bar.set_postfix({k: f"{v:.4g}" for k, v in rec.items() if k in ("loss", "val_accuracy", "val_mse")})
            logger.info("distill epoch %s: %s", epoch + 1, rec)
    finally:
        for hd in handles:
            hd.remove()
        bar.close()
    student.eval()
    return DistillResult(student=student, history=history)


def _validate(student, Xv, yv, tv, cfg, dev, torch) -> dict:
    student.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(Xv), cfg.batch_size):
            o = student(torch.from_numpy(np.ascontiguousarray(Xv[i:i + cfg.batch_size])).to(dev))
            outs.append((o[0] if isinstance(o, (tuple, list)) else o).cpu().numpy())
    s = np.concatenate(outs)
    if cfg.loss == "kl":
        rec = {"val_agreement": float((s.argmax(1) == tv.argmax(1)).mean())}
        if yv is not None:
            rec["val_accuracy"] = float((s.argmax(1) == yv).mean())
        return rec
    return {"val_mse": float(((s - tv) ** 2).mean())}


# --- recover after pruning ------------------------------------------------------------------
class FinetuneConfig(DistillConfig):
    """Config of the ``distill`` pass: raw-output (MSE) distillation of an ONNX student."""

    loss: Literal["kl", "mse"] = Field("mse", description="mse: match the teacher's raw outputs "
                                                          "(detectors); kl: classifier logits")
    epochs: int = Field(3, ge=1, description="passes over the calibration data")
    lr: float = Field(2e-4, gt=0, description="AdamW learning rate (small: the weights are pre-trained)")
    batch_size: int = Field(8, ge=1, description="training batch size")
    teacher: str | None = Field(None, description="teacher ONNX path; default: ctx.source_model (the "
                                                  "recipe's input model)")
    max_samples: int = Field(512, ge=1, description="most calibration samples used for training")


def _stack_feeds(data: Any, input_name: str, limit: int | None = None) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data[:limit] if limit else data
    rows = []
    for item in data:
        if isinstance(item, Mapping):
            if input_name not in item:
                raise ValueError(f"feed has inputs {sorted(item)}, expected {input_name!r}")
            item = item[input_name]
        a = np.asarray(item, dtype=np.float32)
        rows.extend(list(a) if a.ndim >= 2 and a.shape[0] >= 1 else [a])
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise CompressionError("no training data for fine-tuning (empty data / calibration set)")
    return np.stack(rows[:limit] if limit else rows).astype(np.float32)


def finetune_pruned_onnx(pruned_onnx: str | Path | onnx.ModelProto, teacher_onnx: Any, data: Any,
                         config: DistillConfig | None = None, out_path: str | Path | None = None,
                         val: Any = None, loss_fn: Callable | None = None) -> DistillResult:
    """Fine-tune a (pruned) ONNX model against ``teacher_onnx``'s raw outputs; write ONNX.

    ``data``: an array ``(N, ...)`` in the model's input layout, or an iterable of feeds
    (``{input_name: array}``, batch dimension included). ``val`` likewise (optional).
    The trained weights replace the initializers of the same graph, saved at ``out_path``
    (returned as ``result.onnx_path``); the structure onnxruntime runs is unchanged.
    ``teacher_onnx`` may also be a torch module (e.g. ``onnx_to_torch(original)`` to train on
    crops of another size than the ONNX teacher's fixed input). ``loss_fn``: see :func:`distill`.
    """
    from .onnx_torch import onnx_to_torch, write_back

    cfg = config or FinetuneConfig()
    model = pruned_onnx if isinstance(pruned_onnx, onnx.ModelProto) else onnx.load(str(pruned_onnx))
    inits = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise CompressionError(f"fine-tuning supports single-input models, this one has {inputs}")
    limit = getattr(cfg, "max_samples", None)
    X = _stack_feeds(data, inputs[0], limit)
    module = onnx_to_torch(model)
    v = (_stack_feeds(val, inputs[0]), None) if val is not None else None
    dcfg = DistillConfig.model_validate({k: getattr(cfg, k) for k in DistillConfig.model_fields})
    res = distill(teacher_onnx, module, train=(X, None), val=v, config=dcfg, loss_fn=loss_fn)
    trained = write_back(module, model)
    onnx.checker.check_model(trained)
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(trained, str(out_path))
        res.onnx_path = out_path
    res.student = module
    return res


@register_pass
class Distill(Pass):
    """Recover accuracy of ``model_in`` (e.g. after pruning) by distilling from the teacher
    on the calibration inputs (``ctx.calib``); writes the fine-tuned model."""

    name = "distill"
    Config = FinetuneConfig

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        cfg: FinetuneConfig = self.config  # type: ignore[assignment]
        teacher = cfg.teacher or ctx.source_model
        if teacher is None:
            raise CompressionError("distill pass needs a teacher: set `teacher:` in the recipe or run it "
                                   "inside a Recipe that records the source model")
        if ctx.calib is None:
            raise CompressionError("distill pass needs training inputs: pass calibration data (ctx.calib)")
        cfg = cfg.model_copy(update={"progress": cfg.progress and ctx.progress})
        res = finetune_pruned_onnx(model_in, teacher, ctx.calib, cfg, out_path=model_out)
        return PassResult(model_out, {"history": res.history, "teacher": str(teacher)})
