"""Feedback from the end of a stream back to its start: a named :class:`Gate`.

A sink (the speaker) closes the gate for the time it will be playing; a stage marked with
``Stage(..., gate=gate)`` then discards the items *captured* while the gate was closed (the
microphone hearing the speaker), counted as ``gated`` in that stage's stats. Items are
judged by their capture time (``t_capture``), not by when a worker reads them, so a
consumer that runs behind still mutes exactly the audio that was recorded during playback.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

__all__ = ["Gate"]


class Gate:
    """Closed over intervals of time on ``clock`` (``time.monotonic`` by default).

    ``close_for(seconds)`` extends the current closed interval (or starts one now);
    ``is_closed(t)`` says whether ``t`` (default: now) falls in a closed interval. The last
    ``keep`` intervals are remembered, enough for a consumer a few playbacks behind.
    """

    def __init__(self, name: str = "gate", clock: Callable[[], float] = time.monotonic, keep: int = 64):
        if not isinstance(name, str) or not name:
            raise ValueError(f"gate name must be a non-empty string, got {name!r}")
        self.name, self.clock = name, clock
        self._intervals: deque[list[float]] = deque(maxlen=int(keep))
        self._lock = threading.Lock()
        self.closings = 0

    def close_for(self, seconds: float, start: float | None = None) -> float:
        """Close from ``start`` (default now; or the end of the current closing, whichever is
        later) for ``seconds``; returns the time the gate opens again."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        now = self.clock() if start is None else start
        with self._lock:
            self.closings += 1
            last = self._intervals[-1] if self._intervals else None
            if last is not None and last[1] >= now:      # still closed: extend
                last[1] = last[1] + seconds
                return last[1]
            self._intervals.append([now, now + seconds])
            return now + seconds

    def is_closed(self, t: float | None = None) -> bool:
        t = self.clock() if t is None else t
        with self._lock:
            return any(a <= t < b for a, b in reversed(self._intervals))

    @property
    def open_at(self) -> float:
        """When the gate opens after the latest closing (0.0 if it never closed)."""
        with self._lock:
            return self._intervals[-1][1] if self._intervals else 0.0

    def open(self) -> None:
        """Open now: end the current closed interval."""
        now = self.clock()
        with self._lock:
            if self._intervals and self._intervals[-1][1] > now:
                self._intervals[-1][1] = now

    def __repr__(self) -> str:
        return f"Gate({self.name!r}, closings={self.closings})"
