"""The one way a fixture skips when what it needs is not on this machine."""
from __future__ import annotations

from pathlib import Path

import pytest


def file_or_skip(path: Path | None, reason: str) -> Path:
    """``path`` when it is a file; otherwise the test is skipped with ``reason``."""
    if path is None or not path.is_file():
        pytest.skip(reason)
    return path


def dir_or_skip(path: Path, reason: str) -> Path:
    """``path`` when it is a folder; otherwise the test is skipped with ``reason``."""
    if not path.is_dir():
        pytest.skip(reason)
    return path
