"""YOLO-format labelled images: ``DATA/images/*.jpg|png`` with ``DATA/labels/<stem>.txt``, one
line per box: ``class cx cy w h`` (class index, centre and size normalised to 0..1), as
Ultralytics, CVAT and Label Studio export them. An image without a label file has no boxes.

Used by :mod:`apps.driving_perception.yolo_recipe` (and by the apps made with ``edgewise new
--from driving_perception``); :func:`write_sample_yolo` makes a small synthetic set.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class LabelledImage:
    path: Path
    image: np.ndarray          # BGR uint8 (H, W, 3)
    xyxy: np.ndarray           # (N, 4) float32, pixels
    class_ids: np.ndarray      # (N,) int64


def read_label_file(path: Path, num_classes: int, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) xyxy in pixels and class ids (N,) of one label file."""
    h, w = hw
    boxes, classes = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            c, cx, cy, bw, bh = int(parts[0]), *map(float, parts[1:5])
        except (ValueError, IndexError):
            raise ValueError(f"{path}:{n}: expected 'class cx cy w h' (YOLO format), got {line!r}") from None
        if len(parts) != 5 or not 0 <= c < num_classes:
            raise ValueError(f"{path}:{n}: expected 5 fields with a class in 0..{num_classes - 1}, got {line!r}")
        if not all(0.0 <= v <= 1.0 for v in (cx, cy, bw, bh)):
            raise ValueError(f"{path}:{n}: coordinates must be normalised to 0..1, got {line!r}")
        boxes.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
        classes.append(c)
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64)


def load_yolo_folder(root: str | Path, num_classes: int) -> list[LabelledImage]:
    root = Path(root)
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise FileNotFoundError(f"{root} must hold images/ and labels/ (YOLO format: labels/<stem>.txt with "
                                "'class cx cy w h' lines)")
    out = []
    for p in sorted(q for q in images_dir.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read image {p}")
        lab = labels_dir / f"{p.stem}.txt"
        boxes, cls = (read_label_file(lab, num_classes, img.shape[:2]) if lab.is_file()
                      else (np.zeros((0, 4), np.float32), np.zeros(0, np.int64)))
        out.append(LabelledImage(p, img, boxes, cls))
    if not out:
        raise ValueError(f"{images_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return out


# BGR colours of the synthetic classes (class k is a filled rectangle of colour k).
_SAMPLE_COLOURS = [(40, 40, 220), (220, 120, 30), (40, 200, 40), (200, 40, 200), (30, 200, 220)]


def write_sample_yolo(root: str | Path, labels: list[str], n_images: int = 24, size: tuple[int, int] = (128, 160),
                      seed: int = 0) -> Path:
    """A synthetic YOLO set: noisy backgrounds with 1-2 coloured rectangles (colour = class).

    Only for trying the recipe and for tests; replace it with your own labelled images.
    """
    if len(labels) > len(_SAMPLE_COLOURS):
        raise ValueError(f"the sample set draws at most {len(_SAMPLE_COLOURS)} classes, got {len(labels)}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    for k in range(n_images):
        img = np.clip(rng.normal(110, 18, (h, w, 3)), 0, 255).astype(np.uint8)
        lines = []
        for _ in range(int(rng.integers(1, 3))):
            c = int(rng.integers(len(labels)))
            bw, bh = int(rng.integers(w // 6, w // 3)), int(rng.integers(h // 5, h // 2.5))
            x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            cv2.rectangle(img, (x0, y0), (x0 + bw - 1, y0 + bh - 1), _SAMPLE_COLOURS[c], -1)
            lines.append(f"{c} {(x0 + bw / 2) / w:.6f} {(y0 + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}")
        img_path, lab_path = root / "images" / f"frame_{k:04d}.png", root / "labels" / f"frame_{k:04d}.txt"
        if img_path.exists() or lab_path.exists():
            raise FileExistsError(f"{img_path} or its label exists; write the sample set into an empty folder")
        cv2.imwrite(str(img_path), img)
        lab_path.write_text("\n".join(lines) + "\n")
    return root


def write_sample_sequence(root: str | Path, labels: list[str], frames: int = 10, size: tuple[int, int] = (128, 160),
                          seed: int = 1) -> Path:
    """Frames of one rectangle of class 0 moving from the top of the frame to the bottom
    (for trying zone alerts on a "video" folder); replace with your own footage."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    bw, bh = w // 4, h // 3
    for k in range(frames):
        path = root / f"frame_{k:04d}.png"
        if path.exists():
            raise FileExistsError(f"{path} exists; write the sample sequence into an empty folder")
        img = np.clip(rng.normal(110, 18, (h, w, 3)), 0, 255).astype(np.uint8)
        y0 = round(k * (h - bh - 1) / max(frames - 1, 1))
        x0 = w // 3
        cv2.rectangle(img, (x0, y0), (x0 + bw - 1, y0 + bh - 1), _SAMPLE_COLOURS[0], -1)
        cv2.imwrite(str(path), img)
    return root
