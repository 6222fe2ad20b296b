"""Side-by-side evaluation of triage bundles on a MedMNIST-style ``.npz`` split:
AUC, accuracy / sensitivity / specificity at each bundle's operating point, expected
calibration error (before and after temperature scaling), batch-1 latency and file size.

    edgewise medical evaluate ../shared/data/medical/pneumoniamnist_28.npz [--json]
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from apps.medical_imaging.data import load_split
from apps.medical_imaging.metrics import accuracy, binary_margin, ece, roc_auc, sens_spec, sigmoid
from apps.medical_imaging.model import BUNDLES_DIR, TriageModel


def default_set(bundles_dir: str | Path = BUNDLES_DIR, task: str = "pneumonia") -> list[tuple[Path, str, str]]:
    """(bundle, role, label) of teacher, FP32 student and optimized student of ``task``."""
    from apps.medical_imaging.tasks import TASKS

    d, t = Path(bundles_dir), TASKS[task]
    return [(d / t.teacher_bundle, "model", "teacher (FP32)"),
            (d / t.bundle, "fp32", "student (FP32)"),
            (d / t.bundle, "model", "student (optimized)")]


DEFAULT_SET = default_set()


def _batch_logits(m: TriageModel, images_u8: np.ndarray, batch: int = 256) -> np.ndarray:
    out = []
    for i in range(0, len(images_u8), batch):
        frames = [im.astype(np.float32) / 255.0 for im in images_u8[i:i + batch]]
        logits, _ = m.run(m.prepare(frames))
        out.append(logits)
    return np.concatenate(out)


def evaluate_model(m: TriageModel, images_u8: np.ndarray, y: np.ndarray, latency_iters: int = 200) -> dict:
    """Metrics of one bundle role on uint8 (N, H, W) images with 0/1 labels."""
    from sdk.bench import measure_latency

    logits = _batch_logits(m, images_u8)
    margin = binary_margin(logits)
    p = sigmoid(margin / m.policy.temperature)
    sens, spec = sens_spec(y, p, m.policy.threshold)
    x1 = m.prepare([images_u8[0].astype(np.float32) / 255.0])
    lat = measure_latency(lambda: m.run(x1), warmup=20, iters=latency_iters)
    path = m.bundle.model_path(m.role)
    return {"bundle": m.name, "role": m.role, "n": int(len(y)), "auc": roc_auc(y, p),
            "accuracy": accuracy(y, p, m.policy.threshold), "sensitivity": sens, "specificity": spec,
            "threshold": m.policy.threshold, "ece": ece(y, p), "ece_uncalibrated": ece(y, sigmoid(margin)),
            "abstain_rate": float(((p >= m.policy.abstain_low) & (p < m.policy.abstain_high)).mean()),
            "latency_ms_p50": lat.p50_ms, "latency_ms_mean": lat.mean_ms,
            "size_bytes": path.stat().st_size}


def evaluate(data: str | Path, split: str | None = None,
             models: Sequence[tuple[str | Path, str, str]] | None = None, latency_iters: int = 200,
             task: str = "pneumonia") -> list[dict]:
    """Evaluate ``models`` (default: the committed teacher / student / optimized student of
    ``task``) on ``split`` of ``data``; labels are mapped to 1 = the task's positive class."""
    from apps.medical_imaging.data import first_split
    from apps.medical_imaging.tasks import TASKS

    split = split or first_split(data)
    x, y = load_split(data, split)
    y = (y == TASKS[task].positive_label).astype(np.int64)
    models = default_set(BUNDLES_DIR, task) if models is None else models
    rows = []
    for bundle, role, label in models:
        with TriageModel(bundle, role=role) as m:
            if tuple(x.shape[1:]) != tuple(m.input_size):
                raise ValueError(f"{data}: images are {x.shape[1:]}, model {m.name} expects {m.input_size}")
            rows.append({"model": label, "split": split, **evaluate_model(m, x, y, latency_iters)})
    return rows


def table(rows: list[dict]) -> str:
    cols = [("model", "{}"), ("auc", "{:.4f}"), ("accuracy", "{:.4f}"), ("sensitivity", "{:.4f}"),
            ("specificity", "{:.4f}"), ("ece", "{:.4f}"), ("ece_uncalibrated", "{:.4f}"),
            ("latency_ms_p50", "{:.3f}"), ("size_bytes", "{:,}")]
    head = ["model", "AUC", "acc", "sens", "spec", "ECE", "ECE(raw)", "ms/img", "bytes"]
    cells = [[fmt.format(r[k]) for k, fmt in cols] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    n = rows[0]["n"] if rows else 0
    lines.append(f"split {rows[0]['split'] if rows else '?'}: {n} images; sens/spec at each model's operating point; "
                 "latency: batch 1, one thread, p50")
    return "\n".join(lines)
