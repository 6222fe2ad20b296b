"""Steps 2-5 of the training recipe (see :mod:`apps.medical_imaging.train`): distil, export,
optimize, calibrate, fit the OOD reference, write the bundles and their model cards."""
from __future__ import annotations

import json
import logging
import platform
from pathlib import Path
from typing import Any

import numpy as np

from apps.medical_imaging.data import load_split, to_input
from apps.medical_imaging.metrics import binary_margin, roc_auc, sigmoid
from apps.medical_imaging.ood import OODModel, fit_stats
from apps.medical_imaging.policy import fit_policy
from apps.medical_imaging.train_config import TrainConfig

log = logging.getLogger("edgewise")

OOD_QUANTILE = 0.99


def run_onnx(path: Path, x: np.ndarray, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    from sdk.runtime import Engine, EngineOptions, SessionOptions

    with Engine(path, EngineOptions(session=SessionOptions(intra_op_threads=1))) as eng:
        outs = [eng.run_list({"input": x[i:i + batch]}, output_names=["logits", "features"])
                for i in range(0, len(x), batch)]
    return (np.concatenate([o[0] for o in outs]).astype(np.float64),
            np.concatenate([o[1] for o in outs]).astype(np.float64))


def fit_ood(path: Path, Xt, yt, Xv, probes: dict[str, np.ndarray]) -> OODModel:
    _, ft = run_onnx(path, Xt)
    _, fv = run_onnx(path, Xv)
    means, prec = fit_stats(ft, yt)
    tmp = OODModel(means=means.tolist(), precision=prec.tolist(), threshold=0.0)
    sv = tmp.score(fv)
    thr = float(np.quantile(sv, OOD_QUANTILE))
    aurocs = {}
    for name, Xp in probes.items():
        sp = tmp.score(run_onnx(path, Xp)[1])
        y = np.r_[np.zeros(len(sv)), np.ones(len(sp))]
        aurocs[name] = roc_auc(y, np.r_[sv, sp])
        aurocs[f"{name}_detected_at_threshold"] = float((sp > thr).mean())
    return OODModel(means=means.tolist(), precision=prec.tolist(), threshold=thr, quantile=OOD_QUANTILE,
                    auroc=aurocs)


def load_probes(paths: list[str], norm: tuple[float, float]) -> dict[str, np.ndarray]:
    from apps.medical_imaging.data import first_split

    probes = {}
    for p in paths:
        p = Path(p)
        if not p.is_file():
            log.warning("OOD probe set %s not found, skipped", p)
            continue
        x, _ = load_split(p, first_split(p))
        probes[p.stem.replace("_28", "").replace("_subset", "")] = to_input(x, *norm)
    return probes


def preprocess_spec(norm: tuple[float, float]):
    from sdk.preprocess import CastDtype, Normalize, PreprocessSpec, Resize, ToLayout

    return PreprocessSpec(ops=[Resize(size=(28, 28), interpolation="area"),
                               Normalize(mean=norm[0], std=norm[1]), ToLayout(layout="NCHW"),
                               CastDtype(dtype="float32")])


def auc_budget(requested: float | None, judge: Any) -> float:
    """The AUC budget of the optimize search: the one asked for, else 0.005 or, where the
    validation split is too small to tell 0.005 apart (one sample of its smaller class moves the
    AUC by more than half of it), twice that step, so the search can judge it."""
    if requested is not None:
        return float(requested)
    step = judge.resolution() or 0.0
    budget = max(0.005, 2.0 * step)
    if budget > 0.005:
        log.info("AUC budget %.4f: the validation split (%s) cannot resolve 0.005", budget, judge.size_text())
    return budget


def build_bundles(teacher, xt, yt, xv, yv, *, work: Path, cfg: TrainConfig, history: dict) -> dict:
    from apps.medical_imaging.nets import STUDENT_WIDTH, Student, StudentExport, TeacherExport
    from apps.medical_imaging.train_torch import augmented_copies, seed_everything
    from sdk.compress import AUC, CalibrationData, DistillConfig, OptimizeOptions, distill, export_onnx, optimize

    task, norm, progress = cfg.task_spec, cfg.normalization, cfg.progress
    Xt, Xv = to_input(xt, *norm), to_input(xv, *norm)
    t_path = export_onnx(TeacherExport(teacher), Xv[:4], work / "teacher.onnx",
                         input_names=["input"], output_names=["logits", "features"])

    seed_everything(cfg.seed)
    Xa, ya = augmented_copies(Xt, yt, copies=task.copies, seed=cfg.seed)
    seed_everything(cfg.seed)
    student = Student(width=STUDENT_WIDTH)
    kd = DistillConfig(temperature=4.0, alpha=0.7, epochs=cfg.student_epochs, lr=3e-3, batch_size=128,
                       seed=cfg.seed, progress=progress)
    res = distill(teacher, student, train=(Xa, ya), val=(Xv, yv), config=kd)
    history["student"] = res.history
    student = res.student.eval()
    s_path = export_onnx(StudentExport(student), Xv[:4], work / "student_fp32.onnx",
                         input_names=["input"], output_names=["logits", "features"])

    calib = CalibrationData.from_arrays({"input": Xt[:: max(1, len(Xt) // 256)]})
    judge = AUC(Xv, yv, output_index=0)
    budget = auc_budget(cfg.max_auc_drop, judge)
    opt = optimize(s_path, calib, judge,
                   OptimizeOptions(budget={"max_drop": budget}, out_dir=work / "optimize", progress=progress))
    chosen = Path(opt.chosen.path)
    log.info("optimize: %s", opt.note)

    probes = load_probes(list(cfg.ood), norm)
    cfg.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, role_files, desc in [
        (task.teacher_bundle, {"model": t_path}, "ResNet-ish teacher (FP32), for side-by-side evaluation"),
        (task.bundle, {"model": chosen, "fp32": s_path},
         f"compact student distilled from the teacher; 'model' = {opt.chosen.name}, 'fp32' = exported student"),
    ]:
        main = role_files["model"]
        logits, _ = run_onnx(main, Xv)
        policy, figures = fit_policy(logits, yv)
        ood = fit_ood(main, Xt, yt, Xv, probes)
        p = sigmoid(binary_margin(logits) / policy.temperature)
        metrics = {"val_auc": roc_auc(yv, p), **figures}
        results[name] = {"metrics": metrics, "policy": policy.model_dump(), "ood_auroc": ood.auroc}
        extra = {"accepts": task.accepts, "quality": {}, "input_size": [28, 28], "task": task.name,
                 "policy": policy.model_dump(), "ood": ood.model_dump(),
                 "training": {"seed": cfg.seed, "teacher_epochs": cfg.teacher_epochs,
                              "student_epochs": cfg.student_epochs,
                              "optimize": {"chosen": opt.chosen.name, "note": opt.note, "budget": budget,
                                           "candidates": [{k: c.to_dict()[k] for k in
                                                           ("name", "metric", "latency_ms", "size_bytes", "error")}
                                                          for c in opt.candidates]}
                              if name == task.bundle else None,
                              "history": history.get("teacher" if name == task.teacher_bundle else "student"),
                              "host": platform.processor() or platform.machine()}}
        results[name]["extra"] = extra
        results[name]["files"] = role_files
        results[name]["description"] = desc
    json.dump({k: {kk: vv for kk, vv in v.items() if kk in ("metrics", "policy", "ood_auroc")}
               for k, v in results.items()}, open(work / "summary.json", "w"), indent=1, default=str)
    return results


def write_bundles(results: dict, cfg: TrainConfig) -> list[dict]:
    """Save both bundles, evaluate them side by side on val, then add the model cards."""
    from apps.medical_imaging.card import model_card
    from apps.medical_imaging.evaluate import default_set, evaluate
    from sdk.bundle import Manifest, ModelEntry, Provenance, save_bundle

    task, out = cfg.task_spec, cfg.out

    def manifest(name: str, r: dict, metrics: dict) -> Manifest:
        return Manifest(
            name=name, version="1.0.0", task="classification", description=r["description"],
            models={role: ModelEntry(file=f"{role}.onnx") for role in r["files"]},
            labels=list(task.labels), preprocess=preprocess_spec(cfg.normalization), metrics=metrics,
            provenance=Provenance(dataset=task.dataset,
                                  dataset_licence="CC BY 4.0", recipe="apps/medical_imaging/train.py",
                                  licence="Apache-2.0",
                                  notes="Reference design - not a medical device"),
            extra=r["extra"])

    def files(r: dict, card: str | None) -> dict:
        f = {f"{role}.onnx": Path(p) for role, p in r["files"].items()}
        if card is not None:
            f["MODEL_CARD.md"] = card.encode()
        return f

    for name, r in results.items():
        save_bundle(out / name, manifest(name, r, r["metrics"]), files(r, None), overwrite=True)
    rows = evaluate(cfg.data, "val", models=default_set(out, task.name), latency_iters=300, task=task.name)
    by_label = {row["model"]: row for row in rows}
    for name, r in results.items():
        metrics = dict(r["metrics"])
        for row in rows:
            if row["bundle"] == name:
                tag = "" if row["role"] == "model" else f"{row['role']}_"
                metrics.update({f"{tag}val_accuracy": row["accuracy"], f"{tag}val_ece": row["ece"],
                                f"{tag}val_ece_uncalibrated": row["ece_uncalibrated"],
                                f"{tag}latency_ms_p50": row["latency_ms_p50"],
                                f"{tag}size_bytes": float(row["size_bytes"]), f"{tag}val_auc": row["auc"]})
        for k, v in r["extra"]["ood"]["auroc"].items():
            metrics[f"ood_{k}" if "detected" in k else f"ood_auroc_{k}"] = v
        card = model_card(name, r, rows, metrics, cfg)
        save_bundle(out / name, manifest(name, r, metrics), files(r, card), overwrite=True)
    log.info("bundles written to %s: %s", out, ", ".join(by_label))
    return rows
