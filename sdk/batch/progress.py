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

    @property
    def elapsed(self) -> float:
        return max(self.clock() - self.start, 1e-9)

    @property
    def rate(self) -> float:
        """Items per second since the start."""
        return self.done / self.elapsed

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate; None before the first item."""
        return (self.total - self.done) / self.rate if self.done else None

    def line(self) -> str:
        eta = "?" if self.eta_s is None else _clock(self.eta_s)
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (f"{self.label}: {self.done}/{self.total} items ({pct:.0f}%), {self.errors} errors, "
                f"{self.rate:.1f} items/s, ETA {eta}")

    def update(self, n: int, errors: int = 0) -> None:
        self.done += n
        self.errors += errors
        now = self.clock()
        if self.enabled and (now - self._last >= self.interval or self.done >= self.total):
            self._last = now
            print(self.line(), file=self.stream, flush=True)
