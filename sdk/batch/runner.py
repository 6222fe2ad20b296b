"""Run a :class:`~sdk.batch.job.JobSpec` over a folder or file list with Ray Data.

Steps: list the items; drop those an earlier run finished (resume, keyed on content hash +
model hash); stream the rest through ``map_batches`` on an actor pool (one processor per
actor, ``num_cpus``/``num_gpus`` per actor from the spec); write the rows back to Parquet in
parts as they arrive, with progress lines; regenerate ``results.parquet``.

Hashing for resume: a file whose (path, size, mtime) matches a done row is skipped without
being read; any other file is hashed on the driver only when earlier rows exist to compare
with (on a first run the workers hash what they read anyway).
"""
from __future__ import annotations

import logging
import os
import re
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from sdk.batch.items import Item, content_sha256, list_items
from sdk.batch.job import JobSpec
from sdk.batch.progress import Progress
from sdk.batch.results import ResultStore
from sdk.errors import PipelineError, require

log = logging.getLogger("edgewise")

LOCAL_OBJECT_STORE_BYTES = 256 * 2**20   # rows are small; keep Ray's shared memory modest
CRASH_RETRIES = 2                          # a batch whose worker process died is retried this often
ACTOR_START_TIMEOUT_S = 600                # every worker must load its model within this before work starts


@dataclass
class BatchSummary:
    job: str
    listed: int          # items found in SRC
    skipped: int         # already done by an earlier run (same content, same model)
    processed: int       # rows written by this run
    errors: int          # of which error rows
    workers: int
    seconds: float
    items_per_s: float
    results: str | None  # results.parquet

    def to_dict(self) -> dict:
        return asdict(self)


def plan(items: list[Item], store: ResultStore, model_hash: str, threads: int = 8) -> tuple[list[dict], int]:
    """Items still to do (as dicts, with a content hash where one was computed) and how many
    were skipped as done."""
    idx = store.index(model_hash)
    if not idx.keys:
        return [it.to_dict() for it in items], 0
    todo, need_hash = [], []
    skipped = 0
    for it in items:
        sha = None
        if it.size_bytes is not None and it.mtime_ns is not None:
            sha = idx.by_stat.get((it.source, it.size_bytes, it.mtime_ns))
        if sha is not None:
            skipped += 1
        else:
            need_hash.append(it)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        hashes = list(pool.map(lambda it: content_sha256(it.source), need_hash))
    for it, sha in zip(need_hash, hashes, strict=True):
        if sha is not None and sha in idx.keys:
            skipped += 1
        else:
            todo.append({**it.to_dict(), "content_sha256": sha})
    return todo, skipped


def _start_ray(ray, address: str | None, workers: int | None, per_actor_cpus: float) -> bool:
    """Connect to ``address`` or start a local Ray; True when this call started it."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    else:
        cpus = os.cpu_count() or 1
        if workers:
            cpus = max(cpus, int(workers * per_actor_cpus + 0.999))
        ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                 logging_level=logging.WARNING, log_to_driver=False)
    return True


def _pool_size(ray, workers: int | None, spec: JobSpec) -> int:
    cpus = float(ray.cluster_resources().get("CPU", 1))
    fit = max(1, int(cpus // spec.num_cpus))
    if workers is None:
        return fit
    if workers > fit:
        raise ValueError(f"--workers {workers} needs {workers * spec.num_cpus:g} CPUs but the Ray cluster has "
                         f"{cpus:g}; use --workers {fit} or a bigger cluster")
    return workers


def run_job(spec: JobSpec, src: str | Path, out: str | Path, *, workers: int | None = None,
            address: str | None = None, batch_size: int | None = None, flush_rows: int = 64,
            flush_seconds: float = 10.0,
            progress: bool = True, on_flush: Callable[[int], None] | None = None,
            crash_retries: int = CRASH_RETRIES) -> BatchSummary:
    """Run ``spec`` over ``src`` into ``out``. ``on_flush(rows_so_far)`` is called after each part;
    a batch whose worker process dies is retried ``crash_retries`` times, then its items become
    error rows."""
    batch_size = spec.batch_size if batch_size is None else batch_size
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = Path(out)
    items = list_items(src, spec.suffixes, skip=out)
    store = ResultStore(out)
    todo, skipped = plan(items, store, spec.model_hash)
    if skipped:
        log.info("batch %s: %s of %s items already done (same content and model), skipped",
                 spec.name, skipped, len(items))
    t0 = time.perf_counter()
    processed = errors = 0
    pool = 0
    if todo:
        ray = require("ray", "cluster", "running batch jobs")
        require("ray.data", "cluster", "running batch jobs")
        started = _start_ray(ray, address, workers, spec.num_cpus)
        try:
            pool = _pool_size(ray, workers, spec)
            pool = min(pool, -(-len(todo) // batch_size))      # more actors than batches would idle
            processed, errors = _execute(ray, spec, todo, store, pool, batch_size, flush_rows, flush_seconds,
                                         Progress(len(todo), f"batch {spec.name}", enabled=progress), on_flush,
                                         crash_retries)
        finally:
            if started:
                ray.shutdown()
    seconds = time.perf_counter() - t0
    view = store.write_view()
    return BatchSummary(job=spec.name, listed=len(items), skipped=skipped, processed=processed, errors=errors,
                        workers=pool, seconds=seconds, items_per_s=processed / seconds if processed else 0.0,
                        results=str(view) if view else None)


def _execute(ray, spec, todo, store, pool, batch_size, flush_rows, flush_seconds, prog, on_flush, retries):
    import pyarrow as pa
    import ray.data
    from ray.exceptions import RayError

    from sdk.batch.results import schema, to_table
    from sdk.batch.worker import BatchWorker

    want = schema(spec)
    logging.getLogger("ray.data").setLevel(logging.ERROR)   # our own progress lines replace Ray's bars
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    saved_errored, saved_wait = ctx.max_errored_blocks, ctx.wait_for_min_actors_s
    ctx.max_errored_blocks = -1       # a batch that kills its worker on every try is dropped, not fatal
    # start work only once every worker has loaded its model: otherwise the first one ready queues
    # the batches while the others load, and --workers 2 can run on one
    ctx.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
    blocks = max(1, min(len(todo), -(-len(todo) // batch_size)))
    ds = ray.data.from_items(todo, override_num_blocks=blocks)
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for the retry count yet and warns about the keyword
        # form (to be removed in 2.64: the extra pins ray below it)
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        ds = ds.map_batches(BatchWorker, fn_constructor_kwargs={"spec_json": spec.model_dump_json()},
                            batch_size=batch_size, batch_format="pyarrow",
                            compute=ray.data.ActorPoolStrategy(size=pool), num_cpus=spec.num_cpus,
                            num_gpus=spec.num_gpus or None, max_restarts=-1, max_task_retries=retries)
    buffered, done, errors, last = [], 0, 0, time.monotonic()
    seen: set[str] = set()

    def flush():
        nonlocal buffered, last
        if buffered:
            store.write_part(pa.concat_tables(buffered))
            buffered, last = [], time.monotonic()
            if on_flush:
                on_flush(done)

    def take(batch):
        nonlocal done, errors
        n = batch.num_rows
        e = sum(bool(x) for x in batch.column("error").to_pylist())
        seen.update(batch.column("source").to_pylist())
        buffered.append(batch)
        done, errors = done + n, errors + e
        prog.update(n, e)

    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            take(batch.select(want.names).cast(want))
            if sum(b.num_rows for b in buffered) >= flush_rows or time.monotonic() - last >= flush_seconds:
                flush()
        lost = [it for it in todo if it["source"] not in seen]
        if lost:   # their batch crashed its worker every time: error rows without a hash, retried by a rerun
            take(to_table([_crash_row(spec, it, retries + 1) for it in lost], spec))
        flush()
    except RayError as exc:
        flush()   # keep what finished
        full = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()     # Ray colours its messages
        log.debug("batch %s: Ray error in full:\n%s", spec.name, full)
        why = full.splitlines()[-1] if full else type(exc).__name__   # a traceback's last line: the cause
        raise PipelineError(f"batch {spec.name}: Ray job failed after {done} rows ({why}); "
                            f"rerun the same command to resume") from exc
    finally:
        ctx.max_errored_blocks, ctx.wait_for_min_actors_s = saved_errored, saved_wait
    return done, errors


def _crash_row(spec: JobSpec, item: dict, tries: int) -> dict:
    row: dict[str, Any] = {c: None for c in ("hash_ms", "process_ms", "worker", *spec.scores, *spec.fields)}
    row.update(source=item["source"], content_sha256=None, size_bytes=item.get("size_bytes"),
               mtime_ns=item.get("mtime_ns"), job=spec.name, status="error", error=True,
               reasons=[f"no result: the worker process died on every try ({tries}) of the batch holding "
                        f"this item (a crash or out of memory in one of its items); retried by the next run"],
               model=spec.model_name, model_hash=spec.model_hash)
    return row
