"""Result rows in Parquet: ``DIR/parts/*.parquet`` is the record, ``DIR/results.parquet`` a view.

Each flush writes one new part file atomically (a temporary name, then ``os.replace``), so a
job killed at any moment leaves only whole parts: the rows it had flushed are kept, the ones
in flight are redone by the next run. ``results.parquet`` (every row, sorted by source) is
rewritten from the parts at the end of each run and is never read back.

A row is *done* for resume when its ``(content_sha256, model_hash)`` pair is present; rows
without a content hash (the file was not readable) are retried by every run.
"""
from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from sdk.batch.job import JobSpec
from sdk.errors import require

PARTS = "parts"
VIEW = "results.parquet"


def _pa():
    return require("pyarrow", "cluster", "writing batch results to Parquet")


def schema(spec: JobSpec):
    """The Arrow schema of a job's rows: the base columns, then its score and text columns."""
    pa = _pa()
    cols = [("source", pa.string()), ("content_sha256", pa.string()), ("size_bytes", pa.int64()),
            ("mtime_ns", pa.int64()), ("job", pa.string()), ("status", pa.string()), ("error", pa.bool_()),
            ("reasons", pa.list_(pa.string())), ("model", pa.string()), ("model_hash", pa.string()),
            ("hash_ms", pa.float64()), ("process_ms", pa.float64()), ("worker", pa.string())]
    cols += [(s, pa.float64()) for s in spec.scores]
    cols += [(f, pa.string()) for f in spec.fields]
    return pa.schema(cols)


def to_table(rows: list[dict], spec: JobSpec):
    return _pa().Table.from_pylist(rows, schema=schema(spec))


@dataclass
class DoneIndex:
    """What earlier runs finished, for one model hash."""

    keys: set[str] = field(default_factory=set)                   # content hashes done with this model
    by_stat: dict[tuple[str, int, int], str] = field(default_factory=dict)  # (source, size, mtime) -> hash
    rows: int = 0                                                 # rows already in the parts (any model)


class ResultStore:
    """The Parquet record of one output folder."""

    def __init__(self, out_dir: str | Path):
        self.out = Path(out_dir)
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"--out must be a folder, but {self.out} is a file")
        self.parts = self.out / PARTS
        self.parts.mkdir(parents=True, exist_ok=True)
        self._run = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        self._seq = 0

    def part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet"))

    def index(self, model_hash: str) -> DoneIndex:
        pq = require("pyarrow.parquet", "cluster", "reading batch results")
        idx = DoneIndex()
        cols = ["source", "size_bytes", "mtime_ns", "content_sha256", "model_hash"]
        for p in self.part_files():
            try:
                t = pq.read_table(p, columns=cols)
            except Exception as exc:  # noqa: BLE001 - a damaged part is reported, its items redone
                from sdk._log import logger
                logger.warning("batch: ignoring unreadable result part %s (%s); its items will be redone", p, exc)
                continue
            idx.rows += t.num_rows
            for src, size, mtime, sha, mh in zip(*(t.column(c).to_pylist() for c in cols), strict=True):
                if sha is None or mh != model_hash:
                    continue
                idx.keys.add(sha)
                if size is not None and mtime is not None:
                    idx.by_stat[(src, size, mtime)] = sha
        return idx

    def write_part(self, table) -> Path:
        """Write one part atomically; returns its path."""
        pq = require("pyarrow.parquet", "cluster", "writing batch results")
        self._seq += 1
        final = self.parts / f"part-{self._run}-{self._seq:05d}.parquet"
        tmp = self.parts / f".{final.name}.tmp"
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        return final

    def read_all(self):
        """Every row of every part, as one Arrow table (sorted by source, then content hash)."""
        pa, pq = _pa(), require("pyarrow.parquet", "cluster", "reading batch results")
        tables = [pq.read_table(p) for p in self.part_files()]
        if not tables:
            return None
        t = pa.concat_tables(tables, promote_options="default")
        return t.sort_by([("source", "ascending"), ("content_sha256", "ascending")])

    def write_view(self) -> Path | None:
        """Regenerate ``results.parquet`` from the parts."""
        pq = require("pyarrow.parquet", "cluster", "writing batch results")
        t = self.read_all()
        if t is None:
            return None
        final = self.out / VIEW
        tmp = self.out / f".{VIEW}.tmp"
        pq.write_table(t, tmp)
        os.replace(tmp, final)
        return final
