"""Training recipe on class folders: a compact CNN -> ONNX -> fitted policy and OOD reference
-> a triage bundle that :class:`apps.medical_imaging.triage.Triage` serves.

Binary: ``labels = [negative, positive]``. Steps (torch, extra ``train``; fixed seed, one thread):

1. load ``DATA/<label>/*`` gray at ``side`` x ``side``, split ``val_fraction`` per class;
2. train :class:`nets.Student` with :func:`train_torch.train_classifier` (augmentation, AdamW);
3. export ``(logits, features)`` to ONNX (:func:`sdk.compress.export_onnx`, checked in onnxruntime);
4. fit the decision policy on validation logits (:func:`policy.fit_policy`: operating point at
   ``target_sensitivity``, abstain band, urgent level) and the out-of-distribution reference
   on training features (:mod:`ood`, threshold at a validation quantile);
5. save the bundle (hashes of every file in its manifest).
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from apps.medical_imaging.folders import load_class_folders, stratified_split
from apps.medical_imaging.metrics import binary_margin, roc_auc, sigmoid
from apps.medical_imaging.ood import OODModel, fit_stats
from apps.medical_imaging.policy import fit_policy

log = logging.getLogger("edgewise")


class FolderRecipe(BaseModel):
    """Settings of one training run (the app's config file holds them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    labels: list[str] = Field(min_length=2, max_length=2, description="[negative, positive] class folder names")
    side: int = Field(64, ge=16, le=512, description="model input side, pixels (gray)")
    val_fraction: float = Field(0.25, gt=0, lt=1, description="share of each class kept for calibration")
    epochs: int = Field(15, ge=1, description="training epochs")
    width: int = Field(16, ge=4, description="CNN width (channels of the first layer)")
    lr: float = Field(3e-3, gt=0, description="peak learning rate")
    batch_size: int = Field(32, ge=1)
    seed: int = 0
    target_sensitivity: float = Field(0.95, gt=0, le=1, description="validation sensitivity of the operating point")
    abstain_band: float = Field(0.5, ge=0, description="abstain within this many log-odds of the operating point")
    urgent_specificity: float = Field(0.98, gt=0, le=1, description="validation specificity of the urgent level")
    ood_quantile: float = Field(0.99, gt=0, lt=1, description="validation quantile of the OOD threshold")
    min_side: int = Field(16, ge=1, description="smaller images are refused by the gate")


def _run(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sdk.runtime import Engine, EngineOptions, SessionOptions

    with Engine(path, EngineOptions(session=SessionOptions(intra_op_threads=1))) as eng:
        logits, feats = eng.run_list({"input": x}, output_names=["logits", "features"])
    return logits.astype(np.float64), feats.astype(np.float64)


def train_bundle(data: str | Path, out: str | Path, recipe: FolderRecipe, *, name: str,
                 description: str = "", progress: bool = False):
    """Train on ``data`` (class folders) and write the triage bundle ``out``; returns the Bundle."""
    from apps.medical_imaging.nets import Student, StudentExport
    from apps.medical_imaging.train_torch import seed_everything, train_classifier
    from sdk.bundle import Manifest, ModelEntry, Provenance, save_bundle
    from sdk.compress import export_onnx
    from sdk.preprocess import CastDtype, Normalize, PreprocessSpec, Resize, ToLayout

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"bundle folder {out} exists and is not empty; give another --out or remove it")
    x, y = load_class_folders(data, recipe.labels, recipe.side)
    tr, va = stratified_split(y, recipe.val_fraction, recipe.seed)
    norm = (round(float(x[tr].mean()) / 255, 4), max(round(float(x[tr].std()) / 255, 4), 1e-3))
    X = ((x.astype(np.float32) / 255 - norm[0]) / norm[1])[:, None].astype(np.float32)
    log.info("train %d images, val %d (labels %s)", len(tr), len(va), recipe.labels)

    seed_everything(recipe.seed)
    net = Student(width=recipe.width)
    history = train_classifier(net, X[tr], y[tr], X[va], y[va], epochs=recipe.epochs, lr=recipe.lr,
                               batch_size=recipe.batch_size, seed=recipe.seed, progress=progress)
    net.eval()
    with tempfile.TemporaryDirectory(prefix="edgewise_folder_recipe_") as work:
        onnx_path = export_onnx(StudentExport(net), X[va][:2], Path(work) / "model.onnx",
                                input_names=["input"], output_names=["logits", "features"])
        logits_v, feats_v = _run(onnx_path, X[va])
        _, feats_t = _run(onnx_path, X[tr])
        policy, figures = fit_policy(logits_v, y[va], min_sensitivity=recipe.target_sensitivity,
                                     band=recipe.abstain_band, urgent_specificity=recipe.urgent_specificity)
        means, prec = fit_stats(feats_t, y[tr])
        ref = OODModel(means=means.tolist(), precision=prec.tolist(), threshold=0.0)
        ood = ref.model_copy(update={"threshold": float(np.quantile(ref.score(feats_v), recipe.ood_quantile)),
                                     "quantile": recipe.ood_quantile})
        p = sigmoid(binary_margin(logits_v) / policy.temperature)
        metrics = {"val_auc": roc_auc(y[va], p), **figures, "train_images": float(len(tr)),
                   "val_images": float(len(va))}
        manifest = Manifest(
            name=name, version="0.1.0", task="classification",
            description=description or f"{recipe.labels[1]} vs {recipe.labels[0]} triage, trained on {data}",
            models={"model": ModelEntry(file="model.onnx")}, labels=list(recipe.labels),
            preprocess=PreprocessSpec(ops=[Resize(size=(recipe.side, recipe.side), interpolation="area"),
                                           Normalize(mean=norm[0], std=norm[1]), ToLayout(layout="NCHW"),
                                           CastDtype(dtype="float32")]),
            metrics=metrics,
            provenance=Provenance(dataset=str(data), dataset_licence="(yours)", recipe="folder_recipe.py",
                                  licence="(yours)"),
            extra={"accepts": {"modalities": ["image"], "body_parts": [], "min_side": recipe.min_side},
                   "quality": {}, "input_size": [recipe.side, recipe.side], "policy": policy.model_dump(),
                   "ood": ood.model_dump(), "training": {**recipe.model_dump(), "history": history}})
        bundle = save_bundle(out, manifest, {"model.onnx": onnx_path})
    log.info("bundle %s written to %s (val AUC %.3f)", name, out, metrics["val_auc"])
    return bundle
