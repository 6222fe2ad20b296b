"""Live streaming: a reader thread, a bounded queue, worker thread(s), a sink.

    source ──reader──> [bounded queue] ──worker(s)──> stages ──> sink

* ``drop="oldest"`` (live sources: cameras, microphones): when the queue is full the oldest
  queued item is discarded and counted in ``dropped``, so workers always see fresh data and
  the reader never waits. ``drop="block"`` (files): the reader waits for room; nothing is
  dropped.
* ``deadline_s``: an item older than this when a worker picks it up (age measured from its
  ``t_capture``, or from when it was read if it has none) is counted in ``late`` and, with
  ``on_late="skip"`` (default), skipped without running the stages; ``on_late="process"``
  runs it anyway (still counted).
* A stage that raises is counted in ``errors`` and logged; ``on_error="skip"`` (default)
  goes on with the next item, ``on_error="raise"`` stops the stream and ``run()`` /
  ``stop()`` re-raise the :class:`~sdk.errors.PipelineError`.
* A source that raises ends the stream cleanly: ``stats.source_error`` holds the error,
  items already read are still processed, and the sink is closed (flushed) either way.
* A stage may return ``None`` to consume an item without sending anything to the sink.
* With ``workers > 1`` results may reach the sink out of order (the sink is called under a
  lock, one result at a time).
"""
from __future__ import annotations

import inspect
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Sequence

from sdk._log import logger
from sdk.errors import PipelineError
from sdk.pipeline.pipeline import Pipeline
from sdk.pipeline.stage import Stage, StageTimer

__all__ = ["StreamingPipeline", "StreamStats"]

_CLOSED = object()


@dataclass(frozen=True)
class StreamStats:
    """A snapshot of a streaming pipeline's counters.

    ``read``: items pulled from the source; ``processed``: items that went through every
    stage; ``dropped``: discarded by drop-oldest, left queued by ``stop(drain=False)``, or
    left over after the sink failed;
    ``late``: past the deadline; ``errors``: stage failures. Once the stream has ended,
    ``read == processed + dropped + errors + late`` (late items counted only once, when
    skipped) with ``on_late="skip"``. ``per_stage`` maps stage names
    to ``sdk.runtime.LatencyStats``; ``end_to_end`` is capture -> sink done.
    """

    read: int = 0
    processed: int = 0
    dropped: int = 0
    late: int = 0
    errors: int = 0
    per_stage: dict[str, Any] = field(default_factory=dict)
    end_to_end: Any = None
    source_error: str | None = None
    sink_error: str | None = None
    running: bool = False

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("read", "processed", "dropped", "late", "errors",
                                           "source_error", "sink_error", "running")}
        d["per_stage"] = {k: v.model_dump() for k, v in self.per_stage.items()}
        d["end_to_end"] = self.end_to_end.model_dump() if self.end_to_end is not None else None
        return d


class _BoundedQueue:
    """A deque with a Condition: drop-oldest or blocking put, closable get."""

    def __init__(self, maxsize: int, drop: str):
        self.maxsize = maxsize
        self.drop = drop
        self._dq: deque = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.high_water = 0

    def put(self, item, stop: threading.Event) -> int:
        """Enqueue; return how many items were discarded (old ones, or this one on stop)."""
        with self._cond:
            dropped = 0
            if self.drop == "oldest":
                while len(self._dq) >= self.maxsize:
                    self._dq.popleft()
                    dropped += 1
            else:
                while len(self._dq) >= self.maxsize:
                    if stop.is_set():
                        return 1
                    self._cond.wait(0.05)
            self._dq.append(item)
            self.high_water = max(self.high_water, len(self._dq))
            self._cond.notify_all()
            return dropped

    def get(self):
        """Next item, or ``_CLOSED`` once closed and empty."""
        with self._cond:
            while not self._dq and not self._closed:
                self._cond.wait()
            if self._dq:
                item = self._dq.popleft()
                self._cond.notify_all()
                return item
            return _CLOSED

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def clear(self) -> int:
        with self._cond:
            n = len(self._dq)
            self._dq.clear()
            self._cond.notify_all()
            return n

    def __len__(self) -> int:
        with self._cond:
            return len(self._dq)


def _sink_writer(sink) -> Callable[[Any], Any] | None:
    if sink is None:
        return None
    if hasattr(sink, "write"):
        return sink.write
    if callable(sink):
        return sink
    raise TypeError(f"sink must have write(item) or be callable, got {type(sink).__name__}")


class StreamingPipeline:
    """Run ``stages`` on items from ``source`` in background threads; see the module doc.

    ``source`` is any iterable (``Frame``/``AudioBlock`` sources, a generator, a list);
    ``sink`` has ``write(result)`` (and optionally ``close()``) or is a callable.
    ``run()`` blocks until the source ends; ``start()`` returns at once and ``stop()``
    ends it (finishing the queued items unless ``drain=False``). As a context manager the
    stream starts on enter and stops on exit. Not restartable.
    """

    def __init__(
        self,
        source: Iterable[Any],
        stages: Sequence[Stage | Callable[[Any], Any]],
        sink: Any = None,
        queue_size: int = 2,
        drop: Literal["oldest", "block"] = "oldest",
        deadline_s: float | None = None,
        workers: int = 1,
        on_late: Literal["skip", "process"] = "skip",
        on_error: Literal["skip", "raise"] = "skip",
        close_sink: bool = True,
    ):
        if drop not in ("oldest", "block"):
            raise ValueError(f"drop must be 'oldest' or 'block', got {drop!r}")
        if on_late not in ("skip", "process"):
            raise ValueError(f"on_late must be 'skip' or 'process', got {on_late!r}")
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        if int(queue_size) < 1 or int(workers) < 1:
            raise ValueError(f"queue_size and workers must be >= 1, got {queue_size}, {workers}")
        if deadline_s is not None and not deadline_s > 0:
            raise ValueError(f"deadline_s must be > 0 or None, got {deadline_s}")
        if not hasattr(source, "__iter__"):
            raise TypeError(f"source must be iterable, got {type(source).__name__}")
        self.source = source
        self.pipeline = stages if isinstance(stages, Pipeline) else Pipeline(stages)
        self.sink = sink
        self._write = _sink_writer(sink)
        self.drop, self.deadline_s, self.workers = drop, deadline_s, int(workers)
        self.on_late, self.on_error, self.close_sink = on_late, on_error, close_sink
        self._q = _BoundedQueue(int(queue_size), drop)
        self._stop = threading.Event()
        self._lock = threading.Lock()           # counters
        self._sink_lock = threading.Lock()
        self._e2e = StageTimer()
        self._n = dict(read=0, processed=0, dropped=0, late=0, errors=0)
        self._source_error: str | None = None
        self._sink_error: str | None = None
        self._fatal: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._workers_left = 0
        self._finalized = threading.Event()
        self._started = False

    # -- counters --------------------------------------------------------------------
    def _inc(self, key: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self._n[key] += n

    @property
    def stats(self) -> StreamStats:
        with self._lock:
            n = dict(self._n)
        return StreamStats(**n, per_stage=self.pipeline.stats, end_to_end=self._e2e.stats(),
                           source_error=self._source_error, sink_error=self._sink_error,
                           running=self.running)

    @property
    def running(self) -> bool:
        return self._started and not self._finalized.is_set()

    @property
    def queue_high_water(self) -> int:
        """The most items the queue ever held (never above ``queue_size``)."""
        return self._q.high_water

    # -- threads ---------------------------------------------------------------------
    def _reader(self) -> None:
        it = None
        try:
            it = iter(self.source)
            while not self._stop.is_set():
                try:
                    item = next(it)
                except StopIteration:
                    break
                t_ref = getattr(item, "t_capture", None)
                if not isinstance(t_ref, (int, float)):
                    t_ref = time.monotonic()
                self._inc("read")
                self._inc("dropped", self._q.put((t_ref, item), self._stop))
        except Exception as exc:  # the source died: end cleanly, keep what was read
            self._source_error = f"{type(exc).__name__}: {exc}"
            logger.error("pipeline source %s failed: %s", type(self.source).__name__,
                         self._source_error)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:  # pragma: no cover - defensive
                    logger.warning("closing the source iterator failed: %s", exc)
            self._q.close()

    def _worker(self) -> None:
        try:
            while True:
                got = self._q.get()
                if got is _CLOSED:
                    break
                t_ref, item = got
                if self._sink_error is not None:     # the sink died: nowhere to put results
                    self._inc("dropped")
                    continue
                if self.deadline_s is not None and time.monotonic() - t_ref > self.deadline_s:
                    self._inc("late")
                    if self.on_late == "skip":
                        continue
                try:
                    out = self.pipeline(item)
                except PipelineError as exc:
                    self._inc("errors")
                    logger.warning("pipeline item dropped: %s", exc)
                    if self.on_error == "raise":
                        self._fatal = exc
                        self._stop.set()
                        self._inc("dropped", self._q.clear())
                    continue
                if out is not None and self._write is not None:
                    try:
                        with self._sink_lock:
                            self._write(out)
                    except Exception as exc:
                        self._sink_error = f"{type(exc).__name__}: {exc}"
                        logger.error("pipeline sink %s failed, stopping: %s",
                                     type(self.sink).__name__, self._sink_error)
                        self._stop.set()
                        continue
                self._e2e.record_ns(int((time.monotonic() - t_ref) * 1e9))
                self._inc("processed")
        finally:
            with self._lock:
                self._workers_left -= 1
                last = self._workers_left == 0
            if last:
                self._finalize()

    def _finalize(self) -> None:
        if self._finalized.is_set():
            return
        try:
            if self.close_sink and self.sink is not None and hasattr(self.sink, "close"):
                try:
                    with self._sink_lock:
                        self.sink.close()
                except Exception as exc:
                    self._sink_error = self._sink_error or f"{type(exc).__name__}: {exc}"
                    logger.error("closing the pipeline sink failed: %s", exc)
        finally:
            self._finalized.set()

    # -- control ---------------------------------------------------------------------
    def start(self) -> "StreamingPipeline":
        """Start the reader and worker threads; returns at once."""
        if self._started:
            raise PipelineError("this StreamingPipeline was already started; build a new one")
        self._started = True
        self._workers_left = self.workers
        self._threads = [threading.Thread(target=self._reader, name="edgewise-reader", daemon=True)]
        self._threads += [threading.Thread(target=self._worker, name=f"edgewise-worker-{i}",
                                           daemon=True) for i in range(self.workers)]
        for t in self._threads:
            t.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the stream has ended (source exhausted or stopped); False on timeout."""
        return self._finalized.wait(timeout)

    def run(self) -> StreamStats:
        """Start, wait until the source is exhausted, return the stats.

        Ctrl-C stops the stream (finishing queued items) and re-raises KeyboardInterrupt.
        """
        self.start()
        try:
            while not self._finalized.wait(0.2):
                pass
        except KeyboardInterrupt:
            self.stop()
            raise
        self._join_threads(5.0)
        if self._fatal is not None:
            raise self._fatal
        return self.stats

    def stop(self, drain: bool = True, timeout: float = 10.0) -> StreamStats:
        """Stop reading; finish queued items (``drain=True``) or drop them; join; close the sink.

        A source with a ``close()`` method (``MicrophoneSource``) is closed too, so a reader
        blocked waiting for the next item wakes up.
        """
        self._stop.set()
        close = getattr(self.source, "close", None)
        if self._started and callable(close) and not inspect.isgenerator(self.source):
            try:
                close()
            except Exception as exc:
                logger.warning("closing the pipeline source failed: %s", exc)
        if not self._started:
            self._finalize()
            return self.stats
        if not drain:
            self._inc("dropped", self._q.clear())
        self._join_threads(timeout)
        if self._fatal is not None:
            fatal, self._fatal = self._fatal, None
            raise fatal
        return self.stats

    def _join_threads(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        reader, workers = self._threads[0], self._threads[1:]
        reader.join(max(0.0, end - time.monotonic()) / 2)
        if reader.is_alive():
            logger.warning("pipeline source %s did not return within %.1f s of stop(); "
                           "ending the workers without it", type(self.source).__name__, timeout)
            self._q.close()
        for t in workers:
            t.join(max(0.0, end - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            logger.warning("pipeline threads still running after %.1f s: %s "
                           "(a source or stage is blocked)", timeout, alive)

    def __enter__(self) -> "StreamingPipeline":
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop(drain=exc[0] is None)
