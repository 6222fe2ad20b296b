"""Torch side of the recipe: seeding, augmentation and the teacher's training loop."""
from __future__ import annotations

import logging
import math
import random

import numpy as np

from apps.medical_imaging.metrics import roc_auc
from sdk.errors import require

log = logging.getLogger("edgewise")


def seed_everything(seed: int, threads: int = 1):
    torch = require("torch", "train", "training")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch


def augment(x, gen, max_rot_deg: float = 10.0, max_shift: float = 2.0 / 28, scale: float = 0.08,
            intensity: float = 0.1):
    """Small random affine (rotation, shift, zoom) plus brightness/contrast jitter, per image.

    No horizontal flips: a chest film is not left-right symmetric (heart on the left,
    laterality markers), a flipped film is an image the model will never meet.
    """
    torch = require("torch", "train", "training")
    F = torch.nn.functional
    n = x.shape[0]
    ang = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_rot_deg)
    s = 1 + (torch.rand(n, generator=gen) * 2 - 1) * scale
    tx = (torch.rand(n, generator=gen) * 2 - 1) * max_shift * 2
    ty = (torch.rand(n, generator=gen) * 2 - 1) * max_shift * 2
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    fill = x.amin(dim=(1, 2, 3), keepdim=True)
    y = F.grid_sample(x - fill, grid, padding_mode="zeros", align_corners=False) + fill
    b = (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * intensity * 2
    c = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * intensity
    return y * c + b


def augmented_copies(x: np.ndarray, y: np.ndarray, copies: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training inputs plus ``copies`` augmented versions (fixed seed) for distillation."""
    torch = seed_everything(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    xs, ys = [x], [y]
    for _ in range(copies):
        with torch.no_grad():
            xs.append(augment(torch.from_numpy(x), gen).numpy())
        ys.append(y)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def train_classifier(model, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                     *, epochs: int, lr: float, batch_size: int, seed: int, weight_decay: float = 5e-4,
                     label_smoothing: float = 0.05, progress: bool = True):
    """Train ``model`` with AdamW + one-cycle schedule and augmentation; return per-epoch history."""
    torch = require("torch", "train", "training")
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(xt) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    history = []
    from sdk.progress import progress_bar

    bar = progress_bar(range(epochs), desc="teacher", enabled=progress)
    for epoch in bar:
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), batch_size):
            idx = perm[i:i + batch_size]
            xb = augment(xt[idx], gen)
            loss = loss_fn(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        auc = roc_auc(y_val, predict_proba(model, x_val))
        history.append({"epoch": epoch + 1, "loss": total / len(xt), "val_auc": auc})
        log.info("teacher epoch %s loss %.4f val AUC %.4f", epoch + 1, total / len(xt), auc)
        bar.set_postfix(loss=f"{total / len(xt):.3f}", auc=f"{auc:.4f}")
    return history


def predict_logits(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    torch = require("torch", "train", "training")
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(model(torch.from_numpy(x[i:i + batch_size])).numpy())
    return np.concatenate(out).astype(np.float64)


def predict_proba(model, x: np.ndarray) -> np.ndarray:
    z = predict_logits(model, x)
    return 1.0 / (1.0 + np.exp(-(z[:, 1] - z[:, 0])))
