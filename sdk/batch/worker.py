"""The Ray Data actor: one processor (so one Engine) per worker, called on batches of items.

Every item gives exactly one row. The content hash and the processing time are measured
here; an exception from the processor becomes an error row with its reason, so one bad item
never stops the job.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from sdk.batch.items import content_sha256
from sdk.batch.job import ItemResult, JobSpec
from sdk.batch.results import to_table


class BatchWorker:
    """Callable class for ``Dataset.map_batches``: pyarrow batch of items -> pyarrow rows."""

    def __init__(self, spec_json: str):
        self.spec = JobSpec.model_validate_json(spec_json)
        self.processor = self.spec.build()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def run_one(self, item: dict) -> dict:
        t0 = time.perf_counter()
        sha = item.get("content_sha256") or content_sha256(item["source"])
        t1 = time.perf_counter()
        try:
            res = self.processor.process(Path(item["source"]))
            if not isinstance(res, ItemResult):
                raise TypeError(f"processor returned {type(res).__name__}, expected ItemResult")
        except Exception as exc:  # noqa: BLE001 - a bad item is an error row, never a dead job
            res = ItemResult(status="error", error=True, reasons=[f"{type(exc).__name__}: {exc}"])
        t2 = time.perf_counter()
        row = {"source": item["source"], "content_sha256": sha, "size_bytes": item.get("size_bytes"),
               "mtime_ns": item.get("mtime_ns"), "job": self.spec.name, "status": res.status,
               "error": res.error, "reasons": list(res.reasons), "model": res.model or self.spec.model_name,
               "model_hash": self.spec.model_hash, "hash_ms": (t1 - t0) * 1e3, "process_ms": (t2 - t1) * 1e3,
               "worker": self.worker}
        for s in self.spec.scores:
            row[s] = res.scores.get(s)
        for f in self.spec.fields:
            row[f] = res.fields.get(f)
        return row

    def __call__(self, batch):
        return to_table([self.run_one(r) for r in batch.to_pylist()], self.spec)

    def __del__(self):
        close = getattr(getattr(self, "processor", None), "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass
