"""Per-call latency: a preallocated ring of samples and the summary statistics.

Recording one call costs one numpy element store and an integer add, so it can stay on
in the hot path of :class:`~sdk.runtime.Engine` and of pipeline stages.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
from pydantic import BaseModel, ConfigDict


class LatencyStats(BaseModel):
    """Summary of per-call latencies in milliseconds (all zero when ``count == 0``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = 0
    mean_ms: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    min_ms: float = 0.0
    max_ms: float = 0.0

    @property
    def throughput_per_s(self) -> float:
        """Calls per second at the mean latency (sequential, one call at a time)."""
        return 1000.0 / self.mean_ms if self.mean_ms > 0 else 0.0

    @classmethod
    def from_samples(cls, samples_ms: Iterable[float] | np.ndarray) -> "LatencyStats":
        a = np.asarray(samples_ms, dtype=np.float64).ravel()
        if a.size == 0:
            return cls()
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return cls(count=int(a.size), mean_ms=float(a.mean()), p50_ms=float(p50),
                   p90_ms=float(p90), p99_ms=float(p99), min_ms=float(a.min()),
                   max_ms=float(a.max()))

    def __str__(self) -> str:
        return (f"n={self.count} p50={self.p50_ms:.3f} ms p90={self.p90_ms:.3f} ms "
                f"p99={self.p99_ms:.3f} ms mean={self.mean_ms:.3f} ms")


class LatencyRecorder:
    """A fixed-size ring of the last ``capacity`` latencies (nanoseconds in, stats in ms).

    ``count`` keeps counting past the capacity; the statistics cover the samples still in
    the ring. Not locked: concurrent writers may, rarely, overwrite each other's sample.
    """

    __slots__ = ("_buf", "_cap", "_n")

    def __init__(self, capacity: int = 10_000):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._cap = int(capacity)
        self._buf = np.zeros(self._cap, dtype=np.int64)
        self._n = 0

    def record_ns(self, ns: int) -> None:
        self._buf[self._n % self._cap] = ns
        self._n += 1

    def record_ms(self, ms: float) -> None:
        self.record_ns(int(ms * 1e6))

    @property
    def count(self) -> int:
        return self._n

    def samples_ms(self) -> np.ndarray:
        n = min(self._n, self._cap)
        return self._buf[:n].astype(np.float64) / 1e6

    def stats(self) -> LatencyStats:
        s = LatencyStats.from_samples(self.samples_ms())
        return s.model_copy(update={"count": self._n}) if self._n > s.count else s

    def reset(self) -> None:
        self._n = 0
