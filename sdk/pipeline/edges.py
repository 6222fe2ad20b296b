"""The bounded queue on each edge of a streaming pipeline, with its drop policy.

* ``block``: the producer waits for room (files: nothing is dropped);
* ``oldest``: the oldest queued item is discarded to make room (live sources: workers see
  fresh data, the producer never waits; GStreamer's ``leaky=downstream``);
* ``newest``: the arriving item is discarded while the queue is full (keep what is already
  waiting; GStreamer's ``leaky=upstream``).
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable

from sdk.pipeline.stage import DROP_POLICIES, Stage, StageTimer, check_policy

__all__ = ["DROP_POLICIES", "BoundedQueue", "CLOSED", "StageRun"]

CLOSED = object()


class BoundedQueue:
    """A deque under a Condition: ``put`` by policy, ``get`` until closed and empty."""

    def __init__(self, maxsize: int, drop: str):
        check_policy(drop, maxsize)
        self.maxsize, self.drop = int(maxsize), drop
        self._dq: deque = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.high_water = 0

    def put(self, item: Any, abort: threading.Event) -> list:
        """Enqueue ``item``; returns the items discarded (old ones, this one for ``newest``,
        or this one when ``abort`` is set while waiting for room)."""
        with self._cond:
            dropped: list = []
            if self.drop == "oldest":
                while len(self._dq) >= self.maxsize:
                    dropped.append(self._dq.popleft())
            elif self.drop == "newest":
                if len(self._dq) >= self.maxsize:
                    return [item]
            else:
                while len(self._dq) >= self.maxsize:
                    if abort.is_set():
                        return [item]
                    self._cond.wait(0.05)
            self._dq.append(item)
            self.high_water = max(self.high_water, len(self._dq))
            self._cond.notify_all()
            return dropped

    def get(self) -> Any:
        """The next item, or ``CLOSED`` once closed and empty."""
        with self._cond:
            while not self._dq and not self._closed:
                self._cond.wait()
            if self._dq:
                item = self._dq.popleft()
                self._cond.notify_all()
                return item
            return CLOSED

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def clear(self) -> list:
        with self._cond:
            items = list(self._dq)
            self._dq.clear()
            self._cond.notify_all()
            return items

    def __len__(self) -> int:
        with self._cond:
            return len(self._dq)


_COUNTS = ("received", "emitted", "consumed", "dropped", "gated", "late", "errors")


def sink_writer(sink) -> Callable[[Any], Any] | None:
    if sink is None:
        return None
    if hasattr(sink, "write"):
        return sink.write
    if callable(sink):
        return sink
    raise TypeError(f"sink must have write(item) or be callable, got {type(sink).__name__}")


def capture_time(item: Any, default: float) -> float:
    """``item.t_capture`` when it is a number, else ``default``."""
    t = getattr(item, "t_capture", None)
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else default


class StageRun:
    """What sits at the end of an edge: the stage, its input queue, timers, counters and workers."""

    def __init__(self, stage: Stage, queue_size: int, drop: str, workers: int, on_error: str):
        self.stage, self.workers, self.on_error = stage, workers, on_error
        self.queue = BoundedQueue(queue_size, drop)
        self.timer, self.age = StageTimer(), StageTimer()
        self.n = dict.fromkeys(_COUNTS, 0)
        self.alive = 0
        self.dead = False        # a fatal error at or after this stage: what reaches it is dropped
