"""Walking a folder tree the way every SDK and app reader does: sorted, hidden entries and
the output folder left out, optionally filtered by suffix."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

__all__ = ["walk_folder"]


def walk_folder(root: Path, suffixes: Iterable[str] | None = None, skip: Path | None = None) -> list[Path]:
    """Files under ``root``, recursively and sorted; hidden files/folders and ``skip`` (the
    output folder) left out. ``suffixes`` (lower case, "" for no suffix) filters by suffix."""
    wanted = None if suffixes is None else {s.lower() for s in suffixes}
    skip = skip.resolve() if skip is not None else None
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (skip is None or Path(dirpath, d).resolve() != skip))
        for f in sorted(filenames):
            p = Path(dirpath, f)
            if not f.startswith(".") and (wanted is None or p.suffix.lower() in wanted):
                out.append(p)
    return out
