"""Progress of a batch job: items done, rate and ETA, printed as plain lines.

Lines go to a stream (stderr by default) at most every ``interval`` seconds, so they read
well in a terminal, a log file and a cluster job's output alike.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


class Progress:
    """``total`` items to process this run (skipped ones excluded)."""

    def __init__(self, total: int, label: str = "batch", *, stream: TextIO | None = None,
                 interval: float = 5.0, enabled: bool = True, clock: Callable[[], float] = time.monotonic):
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.interval, self.enabled, self.clock = interval, enabled, clock
        self.done = self.errors = 0
        self.start = clock()
        self._last = self.start
        self._first: tuple[float, int] | None = None   # (time, done) at the first update: start-up excluded

    @property
    def elapsed(self) -> float:
        return max(self.clock() - self.start, 1e-9)

    @property
    def rate(self) -> float:
        """Items per second since the start."""
        return self.done / self.elapsed

    @property
    def eta_s(self) -> float | None:
        """Seconds left; None before the first item. Once two updates came, at the rate since
        the first one (worker start-up excluded), else at the average rate."""
        if not self.done:
            return None
        rate = self.rate
        if self._first is not None:
            t0, n0 = self._first
            now = self.clock()
            if self.done > n0 and now > t0:
                rate = (self.done - n0) / (now - t0)
        return (self.total - self.done) / rate

    def line(self) -> str:
        eta = "?" if self.eta_s is None else _clock(self.eta_s)
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (f"{self.label}: {self.done}/{self.total} items ({pct:.0f}%), {self.errors} errors, "
                f"{self.rate:.1f} items/s, ETA {eta}")

    def update(self, n: int, errors: int = 0) -> None:
        now = self.clock()
        if self._first is None and n:
            self._first = (now, self.done + n)
        self.done += n
        self.errors += errors
        if self.enabled and (now - self._last >= self.interval or self.done >= self.total):
            self._last = now
            print(self.line(), file=self.stream, flush=True)
