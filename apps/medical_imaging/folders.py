"""Labelled images in class folders (``DATA/<label>/*.png``): loading, a fixed stratified
split, and a small synthetic set to try the recipe on.

Used by :mod:`apps.medical_imaging.folder_recipe` (and by the apps made with ``edgewise new
--from medical_imaging``). Images are read as gray, resized to the model side with area
interpolation; labels are the folder names, in the order the caller gives.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_class_folders(root: str | Path, labels: list[str]) -> list[tuple[Path, int]]:
    """``(image path, label index)`` for every image under ``root/<label>/``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such data folder: {root} (expected one sub-folder per label: {labels})")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    missing = [lab for lab in labels if lab not in found]
    if missing:
        raise ValueError(f"{root} lacks the class folders {missing}: expected one sub-folder per label "
                         f"{labels}, found {found}")
    items = []
    for i, lab in enumerate(labels):
        files = sorted(p for p in (root / lab).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{root / lab} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        items += [(p, i) for p in files]
    return items


def read_gray(path: Path, side: int) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)


def load_class_folders(root: str | Path, labels: list[str], side: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, side, side), label indices int64 (N,))``."""
    items = list_class_folders(root, labels)
    x = np.stack([read_gray(p, side) for p, _ in items])
    return x, np.array([i for _, i in items], np.int64)


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices, ``val_fraction`` of every class (at least one) in val."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) < 2:
            raise ValueError(f"class {int(c)} has {len(idx)} image(s); at least 2 are needed (train and val)")
        k = max(1, round(len(idx) * val_fraction))
        va += list(idx[:k])
        tr += list(idx[k:])
    return np.sort(np.array(tr)), np.sort(np.array(va))


def write_sample_folders(root: str | Path, labels: list[str], per_class: int = 12, side: int = 64,
                         seed: int = 0) -> Path:
    """A synthetic class-folder set: textured gray images; the last label's have a bright blob.

    Only for trying the recipe and for tests; replace it with your own labelled images.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    for i, lab in enumerate(labels):
        (root / lab).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            img = 90 + 30 * np.sin(xx / (5 + rng.random() * 3)) + rng.normal(0, 12, (side, side))
            if i == len(labels) - 1:
                cy, cx = rng.integers(side // 4, 3 * side // 4, 2)
                img += 90 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (side / 10) ** 2))
            path = root / lab / f"{lab}_{k:03d}.png"
            if path.exists():
                raise FileExistsError(f"{path} exists; write the sample set into an empty folder")
            cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))
    return root
