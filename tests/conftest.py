"""Fixtures shared by every test package.

Real data from ``../shared`` is optional: tests that need it take the ``shared_dir``
fixture, which skips with a reason where it is absent (a user's fresh clone has none).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.skips import dir_or_skip, file_or_skip

REPO = Path(__file__).resolve().parents[1]


def _shared_root() -> Path:
    return Path(os.environ.get("EDGEWISE_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    root = _shared_root()
    dir_or_skip(root / "data", f"real data not found at {root} (set EDGEWISE_SHARED to the shared/ folder)")
    return root


@pytest.fixture(scope="session")
def yolox_path(shared_dir) -> Path:
    p = shared_dir / "models" / "yolox_nano_coco_416.onnx"
    return file_or_skip(p, f"YOLOX-nano not found at {p}")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never let a test write into the user's real model cache."""
    monkeypatch.setenv("EDGEWISE_HOME", str(tmp_path_factory.mktemp("edgewise_home")))
