"""MedMNIST-style ``.npz`` datasets and the model-input conversion shared by training and the app.

Images are gray uint8 (N, H, W) (RGB sets such as PathMNIST are converted to gray so they
can be used as out-of-distribution probes); labels are flattened to int64 (N,).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# PneumoniaMNIST train-split statistics of pixel/255 (recorded in the bundle manifest).
DEFAULT_MEAN = 0.5719
DEFAULT_STD = 0.1683


def load_split(path: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 (N,H,W), labels int64 (N,))`` of ``split`` ("train", "val", "test")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset not found: {path}")
    with np.load(path, allow_pickle=False) as d:
        key = f"{split}_images"
        if key not in d.files:
            raise ValueError(f"{path.name} has no split {split!r}: expected key {key!r}, found {sorted(d.files)}")
        x = np.asarray(d[key])
        y = np.asarray(d[f"{split}_labels"]).reshape(-1).astype(np.int64)
    if x.ndim == 4 and x.shape[-1] == 3:  # RGB -> gray (ITU-R 601 luma), for OOD probes
        x = (x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (N, H, W), got {x.dtype} {x.shape}")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels in split {split!r}")
    return x, y


def first_split(path: str | Path) -> str:
    """The evaluation split of a file: "val" if present, else "test", else "train"."""
    with np.load(path, allow_pickle=False) as d:
        for s in ("val", "test", "train"):
            if f"{s}_images" in d.files:
                return s
    raise ValueError(f"{path} has no *_images array")


def to_input(images_u8: np.ndarray, mean: float = DEFAULT_MEAN, std: float = DEFAULT_STD) -> np.ndarray:
    """uint8 (N,H,W) at the model size -> float32 (N,1,H,W) normalised input."""
    x = images_u8.astype(np.float32) / 255.0
    return ((x - mean) / std)[:, None, :, :].astype(np.float32)
