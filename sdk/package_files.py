"""Files shipped inside an installed Python package (a model an ONNX-carrying wheel holds),
found without importing the package."""
from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["package_dir", "package_file"]


def package_dir(package: str) -> Path | None:
    """The installed package's folder, or None when it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def package_file(package: str, *parts: str) -> Path | None:
    """``<package folder>/<parts...>`` when the package is installed and the file is there, else None."""
    d = package_dir(package)
    p = d.joinpath(*parts) if d is not None else None
    return p if p is not None and p.is_file() else None
