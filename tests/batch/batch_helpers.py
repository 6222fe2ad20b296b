"""Helpers of the batch tests: a processor imported by name (as a job would), row comparison."""
from __future__ import annotations

import os
from pathlib import Path

from sdk.batch import ItemResult


class SizeProcessor:
    """Scores a file by its size; raises on files named ``boom*``."""

    def __init__(self, scale: float = 1.0):
        self.scale = scale
        self.closed = False

    def process(self, path: Path) -> ItemResult:
        if path.name.startswith("boom"):
            raise RuntimeError("exploded on purpose")
        return ItemResult(status="ok", scores={"size": path.stat().st_size * self.scale}, fields={"name": path.name})

    def close(self) -> None:
        self.closed = True


class CrashProcessor:
    """Kills its own worker process on files named ``die*`` (a segfaulting decoder, say)."""

    def process(self, path: Path) -> ItemResult:
        if path.name.startswith("die"):
            os._exit(3)
        return ItemResult(status="ok", fields={"name": path.name})

    def close(self) -> None:
        pass


def rows_by_source(table) -> dict[str, dict]:
    """Result rows keyed by source, without the columns that differ from run to run."""
    out = {}
    for r in table.to_pylist():
        for k in ("hash_ms", "process_ms", "worker"):
            r.pop(k)
        out[r["source"]] = r
    return out


class BrokenInitProcessor:
    """Cannot start (a bundle missing on a worker node, say)."""

    def __init__(self):
        raise FileNotFoundError("bundle not found on this node: /nope")

    def process(self, path: Path) -> ItemResult:
        raise AssertionError("never called")


class SlowSecondStartProcessor:
    """The first worker to start is ready at once; every later one loads for ``delay_s``
    (a model load on a busy node). ``marker`` is a path the first one creates."""

    def __init__(self, marker: str, delay_s: float = 4.0):
        import time

        try:
            Path(marker).open("x").close()        # atomic: exactly one worker wins
        except FileExistsError:
            time.sleep(delay_s)

    def process(self, path: Path) -> ItemResult:
        return ItemResult(status="ok", fields={"name": path.name})

    def close(self) -> None:
        pass
