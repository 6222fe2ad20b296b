"""Occlusion sensitivity through the ONNX model (Zeiler & Fergus, 2014).

A gray patch (the training mean, i.e. 0 after normalisation) slides over the model input;
all occluded copies run as one batch; a pixel's heat is the mean drop of the calibrated
probability over the patches covering it. Works for any model the app can run, with no
access to gradients.
"""
from __future__ import annotations

import cv2
import numpy as np


def occlusion_map(model, frame: np.ndarray, patch: int = 7, stride: int = 2) -> tuple[np.ndarray, float]:
    """Heat (H, W) at the model input size, >= 0, and the unoccluded probability."""
    x0 = model.prepare([frame])                      # (1, 1, H, W)
    _, _, h, w = x0.shape
    ys = list(range(0, max(h - patch, 0) + 1, stride))
    xs = list(range(0, max(w - patch, 0) + 1, stride))
    batch = np.repeat(x0, len(ys) * len(xs) + 1, axis=0)
    k = 1
    for y in ys:
        for x in xs:
            batch[k, :, y:y + patch, x:x + patch] = 0.0
            k += 1
    logits, _ = model.run(batch)
    p = model.policy.probability(logits)
    heat = np.zeros((h, w), np.float64)
    count = np.zeros((h, w), np.float64)
    k = 1
    for y in ys:
        for x in xs:
            heat[y:y + patch, x:x + patch] += p[0] - p[k]
            count[y:y + patch, x:x + patch] += 1
            k += 1
    heat = np.clip(heat / np.maximum(count, 1), 0, None)
    return heat.astype(np.float32), float(p[0])


def display_image(frame: np.ndarray, max_side: int = 256) -> np.ndarray:
    """Gray float [0, 1] frame -> uint8 BGR image at most ``max_side`` pixels wide/high."""
    f = np.nan_to_num(frame.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    h, w = f.shape
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    g = cv2.resize(f, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    g8 = (np.clip(g, 0, 1) * 255).round().astype(np.uint8)
    return cv2.cvtColor(g8, cv2.COLOR_GRAY2BGR)


def overlay(frame: np.ndarray, heat: np.ndarray, max_side: int = 256, alpha: float = 0.45) -> np.ndarray:
    """Heatmap (JET colours, scaled to its own maximum) blended over the image, uint8 BGR."""
    base = display_image(frame, max_side)
    hm = cv2.resize(heat, (base.shape[1], base.shape[0]), interpolation=cv2.INTER_CUBIC)
    peak = float(hm.max())
    hm8 = (np.clip(hm / peak, 0, 1) * 255).astype(np.uint8) if peak > 0 else np.zeros(hm.shape, np.uint8)
    colour = cv2.applyColorMap(hm8, cv2.COLORMAP_JET)
    return cv2.addWeighted(colour, alpha, base, 1 - alpha, 0)
