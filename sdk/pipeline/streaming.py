"""Live streaming: a chain of stages, each with its own worker(s) and bounded input queue.

    source ──reader──> [queue] ──stage 1──> [queue] ──stage 2──> ... ──last stage──> sink
                          ▲                                                          │
                          └──────────── feedback: a Gate the sink closes ◄───────────┘

* Each edge has its own capacity and drop policy (``Stage(queue_size=, drop=)``; see
  :mod:`sdk.pipeline.edges`): ``"oldest"`` for live sources (cameras, microphones: the
  reader never waits, workers always see fresh data), ``"block"`` for files and, by default,
  between stages, ``"newest"`` to keep what is already waiting. Every discarded item is
  counted on the stage whose queue it was and reported as a ``drop`` event.
* ``deadline_s``: an item older than this when the first stage picks it up (age from its
  ``t_capture``, or from when it was read) is counted in ``late`` and, with
  ``on_late="skip"`` (default), skipped; ``on_late="process"`` runs it anyway.
* A stage that raises is counted in ``errors`` and reported as an ``error`` event carrying
  a :class:`~sdk.errors.PipelineError`; ``on_error="skip"`` (default, per pipeline or per
  stage) goes on with the next item, ``"raise"`` stops the stream and ``run()`` / ``stop()``
  re-raise the error. Items already past the failed stage still reach the sink.
* A source that raises ends the stream cleanly: ``stats.source_error`` holds the error,
  items already read are still processed, stages are flushed and the sink is closed.
* A stage may return ``None`` to consume an item, or (``fan_out=True``) any number of items.
* With ``workers > 1`` a stage's results may leave it out of order; the sink is called
  under a lock, one result at a time, on the last stage's worker thread.
* ``on_event(StreamEvent)`` is told of drops, late items, stage/source/sink errors and the
  end of the stream; an exception in it is logged and otherwise ignored.
"""
from __future__ import annotations

import inspect
import threading
import time
from typing import Any, Callable, Iterable, Literal, Sequence

from sdk._log import logger
from sdk.errors import PipelineError
from sdk.pipeline.edges import CLOSED, StageRun, capture_time, check_policy, sink_writer
from sdk.pipeline.pipeline import Pipeline
from sdk.pipeline.stage import Stage, StageTimer
from sdk.pipeline.stream_stats import StageStats, StreamEvent, StreamStats

__all__ = ["StreamingPipeline", "StreamStats", "StageStats", "StreamEvent"]

class StreamingPipeline:
    """Run ``stages`` on items from ``source`` in background threads; see the module doc.

    ``source`` is any iterable (``Frame``/``AudioBlock`` sources, a generator, a list);
    ``sink`` has ``write(result)`` (and optionally ``close()``) or is a callable.
    ``queue_size`` / ``drop`` set the queue in front of the first stage unless that stage
    sets its own. ``run()`` blocks until the source ends; ``start()`` returns at once and
    ``stop()`` ends it (finishing the queued items unless ``drain=False``). As a context
    manager the stream starts on enter and stops on exit. Not restartable.
    """

    def __init__(
        self,
        source: Iterable[Any],
        stages: Sequence[Stage | Callable[[Any], Any]] | Pipeline,
        sink: Any = None,
        queue_size: int = 2,
        drop: Literal["oldest", "block", "newest"] = "oldest",
        deadline_s: float | None = None,
        workers: int = 1,
        on_late: Literal["skip", "process"] = "skip",
        on_error: Literal["skip", "raise"] = "skip",
        close_sink: bool = True,
        on_event: Callable[[StreamEvent], Any] | None = None,
    ):
        check_policy(drop, queue_size)
        if on_late not in ("skip", "process"):
            raise ValueError(f"on_late must be 'skip' or 'process', got {on_late!r}")
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        if int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if deadline_s is not None and not deadline_s > 0:
            raise ValueError(f"deadline_s must be > 0 or None, got {deadline_s}")
        if not hasattr(source, "__iter__"):
            raise TypeError(f"source must be iterable, got {type(source).__name__}")
        chain = [Stage.of(s) for s in (stages.stages if isinstance(stages, Pipeline) else stages)]
        if not chain:
            raise ValueError("a StreamingPipeline needs at least one stage")
        names = [s.name for s in chain]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"stage names must be unique, got duplicates {dup}")
        self.source, self.sink, self._write = source, sink, sink_writer(sink)
        self.stages = chain
        self.drop, self.deadline_s, self.workers = drop, deadline_s, int(workers)
        self.on_late, self.on_error, self.close_sink = on_late, on_error, close_sink
        self.on_event = on_event
        self._runs = [StageRun(s, s.queue_size or int(queue_size), s.drop or (drop if i == 0 else "block"),
                               int(s.workers or workers), s.on_error or on_error) for i, s in enumerate(chain)]
        self._stop = threading.Event()          # stop reading the source
        self._abort = threading.Event()         # stop waiting for room anywhere (drain=False, fatal)
        self._lock = threading.Lock()           # counters
        self._sink_lock = threading.Lock()
        self._e2e = StageTimer()
        self._n = dict(read=0, processed=0)
        self._source_error: str | None = None
        self._sink_error: str | None = None
        self._fatal: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._finalized = threading.Event()
        self._started = False

    # -- counters and events ------------------------------------------------------------
    def _inc(self, run: StageRun | None, key: str, n: int = 1) -> None:
        if n:
            with self._lock:
                (self._n if run is None else run.n)[key] += n

    def _emit(self, kind: str, **kw) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(StreamEvent(kind, time.monotonic(), **kw))   # type: ignore[arg-type]
        except Exception as exc:  # a broken display must not stop the stream
            logger.warning("pipeline on_event handler failed on a %s event: %s", kind, exc)

    def _dropped(self, i: int, items: list, why: str) -> None:
        run = self._runs[i]
        self._inc(run, "dropped", len(items))
        for _, item in items:
            self._emit("drop", stage=run.stage.name, item=item, message=why)

    @property
    def stats(self) -> StreamStats:
        with self._lock:
            n, per = dict(self._n), [dict(r.n) for r in self._runs]
        stages = {r.stage.name: StageStats(r.stage.name, **c, queued=len(r.queue), high_water=r.queue.high_water,
                                           latency=r.timer.stats(), age=r.age.stats())
                  for r, c in zip(self._runs, per, strict=True)}
        total = {k: sum(c[k] for c in per) for k in ("dropped", "late", "errors", "gated")}
        return StreamStats(**n, **total, per_stage={k: v.latency for k, v in stages.items()},
                           end_to_end=self._e2e.stats(), source_error=self._source_error,
                           sink_error=self._sink_error, running=self.running, stages=stages)

    @property
    def running(self) -> bool:
        return self._started and not self._finalized.is_set()

    @property
    def queue_high_water(self) -> int:
        """The most items the first queue ever held (never above its size)."""
        return self._runs[0].queue.high_water

    # -- threads ------------------------------------------------------------------------
    def _reader(self) -> None:
        it = None
        try:
            it = iter(self.source)
            while not self._stop.is_set():
                try:
                    item = next(it)
                except StopIteration:
                    break
                self._inc(None, "read")
                self._dropped(0, self._runs[0].queue.put((capture_time(item, time.monotonic()), item), self._stop),
                              f"queue of {self._runs[0].stage.name!r} full ({self._runs[0].queue.drop})")
        except Exception as exc:  # the source died: end cleanly, keep what was read
            self._source_error = f"{type(exc).__name__}: {exc}"
            logger.error("pipeline source %s failed: %s", type(self.source).__name__, self._source_error)
            self._emit("source_error", message=self._source_error, error=exc)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:  # pragma: no cover - defensive
                    logger.warning("closing the source iterator failed: %s", exc)
            self._runs[0].queue.close()

    def _worker(self, i: int) -> None:
        run = self._runs[i]
        try:
            while True:
                got = run.queue.get()
                if got is CLOSED:
                    break
                self._handle(i, *got)
        finally:
            with self._lock:
                run.alive -= 1
                last = run.alive == 0
            if last:
                self._stage_done(i)

    def _handle(self, i: int, t_ref: float, item: Any) -> None:
        run, stage = self._runs[i], self._runs[i].stage
        self._inc(run, "received")
        if self._sink_error is not None or self._abort.is_set() or run.dead:   # nowhere to put results
            self._inc(run, "dropped")
            return
        if i == 0 and self.deadline_s is not None and time.monotonic() - t_ref > self.deadline_s:
            self._inc(run, "late")
            self._emit("late", stage=stage.name, item=item,
                       message=f"{time.monotonic() - t_ref:.3f} s old > deadline {self.deadline_s} s")
            if self.on_late == "skip":
                return
        if stage.gate is not None and stage.gate.is_closed(t_ref):
            self._inc(run, "gated")
            try:
                if stage.on_gated is not None:
                    stage.on_gated(item)
            except Exception as exc:
                self._failed(run, exc, item)
            return
        t0 = time.perf_counter_ns()
        try:
            out = stage.fn(item)
            outs = list(out) if stage.fan_out else ([] if out is None else [out])
        except Exception as exc:
            self._failed(run, exc, item)
            return
        run.timer.record_ns(time.perf_counter_ns() - t0)
        self._forward(i, t_ref, outs)

    def _failed(self, run: StageRun, exc: Exception, item: Any) -> None:
        err = PipelineError(f"stage {run.stage.name!r} failed: {type(exc).__name__}: {exc}")
        err.__cause__ = exc
        run.timer.errors += 1
        self._inc(run, "errors")
        fatal = run.on_error == "raise"
        logger.warning("pipeline item dropped: %s", err)
        self._emit("error", stage=run.stage.name, message=str(err), item=item, error=err, fatal=fatal)
        if fatal and self._fatal is None:
            self._fatal = err
            self._abort_all(upto=self._runs.index(run))

    def _forward(self, i: int, t_ref: float, outs: list) -> None:
        run = self._runs[i]
        if not outs:
            self._inc(run, "consumed")
            self._finished(t_ref)
            return
        for out in outs:
            t_out = capture_time(out, t_ref)
            self._inc(run, "emitted")
            run.age.record_ns(int((time.monotonic() - t_out) * 1e9))
            if i + 1 < len(self._runs):
                nxt = self._runs[i + 1]
                self._dropped(i + 1, nxt.queue.put((t_out, out), self._abort),
                              f"queue of {nxt.stage.name!r} full ({nxt.queue.drop})")
            elif self._write is None:
                self._finished(t_out)
            elif self._sink_error is None:
                try:
                    with self._sink_lock:
                        self._write(out)
                except Exception as exc:
                    self._sink_error = f"{type(exc).__name__}: {exc}"
                    logger.error("pipeline sink %s failed, stopping: %s", type(self.sink).__name__,
                                 self._sink_error)
                    self._emit("sink_error", message=self._sink_error, item=out, error=exc)
                    self._stop.set()
                    continue
                self._finished(t_out)
            else:
                self._inc(run, "dropped")

    def _finished(self, t_ref: float) -> None:
        self._e2e.record_ns(int((time.monotonic() - t_ref) * 1e9))
        self._inc(None, "processed")

    def _stage_done(self, i: int) -> None:
        """The last worker of stage ``i`` is done: flush it, then end the next edge."""
        run = self._runs[i]
        if run.stage.flush is not None and not self._abort.is_set() and not run.dead:
            try:
                outs = list(run.stage.flush() or [])
            except Exception as exc:
                self._failed(run, exc, None)
                outs = []
            if outs:
                self._forward(i, time.monotonic(), outs)
        if i + 1 < len(self._runs):
            self._runs[i + 1].queue.close()
        else:
            self._finalize()

    def _abort_all(self, upto: int | None = None) -> None:
        """Stop reading and drop what is queued: everywhere, or (a fatal error in stage
        ``upto``) up to that stage, while the stages after it still finish what they hold."""
        self._stop.set()
        if upto is None:
            self._abort.set()
        for i, run in enumerate(self._runs[: None if upto is None else upto + 1]):
            run.dead = True
            self._dropped(i, run.queue.clear(), "stream stopped without draining")

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
            why = ("stage failed" if self._fatal is not None else "sink failed" if self._sink_error else
                   "source failed" if self._source_error else "stopped" if self._stop.is_set() else
                   "source exhausted")
            self._emit("end", message=why, error=self._fatal)
        finally:
            self._finalized.set()

    # -- control ------------------------------------------------------------------------
    def start(self) -> "StreamingPipeline":
        """Start the reader and the stage workers; returns at once."""
        if self._started:
            raise PipelineError("this StreamingPipeline was already started; build a new one")
        self._started = True
        self._threads = [threading.Thread(target=self._reader, name="edgewise-reader", daemon=True)]
        for i, run in enumerate(self._runs):
            run.alive = run.workers
            self._threads += [threading.Thread(target=self._worker, args=(i,), daemon=True,
                                               name=f"edgewise-{run.stage.name}-{k}") for k in range(run.workers)]
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
            self._abort_all()
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
            self._runs[0].queue.close()
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
