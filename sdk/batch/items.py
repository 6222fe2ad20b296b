"""What a batch job runs over: the items listed from a folder tree or a CSV/Parquet list.

An :class:`Item` is a file path plus the ``stat`` facts resume uses to recognise a file it
has already processed without reading it again (size and modification time, as ``git`` and
``rsync`` do). Content hashes are computed only where they are needed (see ``runner``).
"""
from __future__ import annotations

import csv
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from sdk.pipeline.folder_walk import walk_folder

CHUNK = 1 << 20
LIST_SUFFIXES = {".csv", ".parquet"}
PATH_COLUMNS = ("path", "source", "file", "filename")


@dataclass(frozen=True)
class Item:
    source: str            # the file's path, absolute (symlinks kept as given)
    size_bytes: int | None  # None: not a regular file or not there (the job gives the reason)
    mtime_ns: int | None

    @classmethod
    def of(cls, path: str | Path) -> "Item":
        p = Path(path).absolute()
        try:
            st = p.stat()
        except OSError:
            return cls(str(p), None, None)
        if not stat.S_ISREG(st.st_mode):
            return cls(str(p), None, None)
        return cls(str(p), st.st_size, st.st_mtime_ns)

    def to_dict(self) -> dict:
        return {"source": self.source, "size_bytes": self.size_bytes, "mtime_ns": self.mtime_ns}


def content_sha256(path: str | Path) -> str | None:
    """Hex SHA-256 of a regular file's bytes; None for anything else (a FIFO, a device, a
    folder, a file that is not there or not readable), which is never read."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None


def _list_column(names: list[str], where: Path) -> str:
    for c in PATH_COLUMNS:
        if c in names:
            return c
    raise ValueError(f"{where}: a file list needs a column named one of {', '.join(PATH_COLUMNS)}; "
                     f"found columns {names}")


def read_file_list(path: Path) -> list[Path]:
    """Paths from a CSV (header row) or Parquet file with a ``path`` (or ``source``/``file``/
    ``filename``) column; relative paths are taken from the list's own folder."""
    if path.suffix.lower() == ".parquet":
        from sdk.errors import require

        pq = require("pyarrow.parquet", "cluster", "reading a Parquet file list")
        table = pq.read_table(path)
        col = _list_column(table.column_names, path)
        values = table.column(col).to_pylist()
    else:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            col = _list_column(list(reader.fieldnames or []), path)
            values = [row[col] for row in reader]
    out = []
    for i, v in enumerate(values):
        if v is None or not str(v).strip():
            raise ValueError(f"{path}: row {i + 1} has an empty {col!r}; expected a file path")
        p = Path(str(v).strip())
        out.append(p if p.is_absolute() else path.parent / p)
    return out


def list_items(src: str | Path, suffixes: Iterable[str] | None = None, skip: Path | None = None) -> list[Item]:
    """Items of a job: ``src`` is a folder (walked recursively), a CSV/Parquet list of files,
    or one file. Raises FileNotFoundError when ``src`` is not there."""
    src = Path(src)
    if src.is_dir():
        paths = walk_folder(src, suffixes, skip)
    elif src.is_file() and src.suffix.lower() in LIST_SUFFIXES:
        paths = read_file_list(src)
    elif src.exists():
        paths = [src]
    else:
        raise FileNotFoundError(f"no such folder, file list or file: {src}")
    return [Item.of(p) for p in paths]
