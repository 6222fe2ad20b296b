"""Fixtures of the batch tests: one local Ray (2 CPUs) shared by every test, and a small
archive of chest-like PNGs with one corrupt file."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))   # tests/batch/batch_helpers.py (in-process only)


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 2 CPUs for the whole session, shut down at the end (no processes left)."""
    ray = pytest.importorskip("ray", reason="ray not installed: pip install 'edgewise[cluster]'")
    pytest.importorskip("pyarrow", reason="pyarrow not installed: pip install 'edgewise[cluster]'")
    if ray.is_initialized():
        ray.shutdown()
    path = os.pathsep.join(p for p in (str(HERE), str(HERE.parents[1]), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20, log_to_driver=False,
             logging_level="WARNING", runtime_env={"env_vars": {"PYTHONPATH": path}})   # workers see batch_helpers
    yield ray
    ray.shutdown()
    from sdk.batch.scratch import remove_stale

    for job in ("medical", "drive"):   # workers Ray ended with a hard kill left their scratch folders
        remove_stale(job)


def _image(i: int) -> np.ndarray:
    """A smooth gray 'chest-like' image that varies with ``i`` (uint8)."""
    rng = np.random.default_rng(i)
    size = (48, 64, 96)[i % 3]
    yy, xx = np.mgrid[0:size, 0:size] / size
    depth = 0.15 + 0.3 * rng.random()
    img = 0.6 + 0.2 * np.cos((xx - 0.5) * 3) - depth * (
        np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / (0.01 + 0.03 * rng.random()))
        + np.exp(-((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / (0.01 + 0.03 * rng.random())))
    img = np.clip(img + rng.normal(0, 0.04, img.shape), 0, 1)
    return (img * 255).round().astype(np.uint8)


def _images(n: int) -> list[np.ndarray]:
    """Real PneumoniaMNIST validation images where ../shared has them, else synthetic ones."""
    npz = Path(os.environ.get("EDGEWISE_SHARED", HERE.parents[2] / "shared")) / "data/medical/pneumoniamnist_28.npz"
    if npz.is_file():
        with np.load(npz) as d:
            return list(d["val_images"][:n])
    return [_image(i) for i in range(n)]


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Path:
    """30 PNGs in two sub-folders plus ``corrupt.png`` (a PNG signature and garbage)."""
    root = tmp_path_factory.mktemp("archive")
    for i, img in enumerate(_images(30)):
        d = root / ("ward_a" if i % 2 else "ward_b")
        d.mkdir(exist_ok=True)
        cv2.imwrite(str(d / f"img_{i:03d}.png"), img)
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 8)
    return root
