"""A fixed-capacity audio ring buffer for real-time callbacks (sounddevice and the like).

Design: one preallocated ``(capacity, channels)`` array and a ``threading.Condition``
whose lock is held only for the index arithmetic and one or two ``memcpy``-sized slice
copies, never across I/O or allocation, so a producer callback (the PortAudio thread)
waits at most for one such copy by the consumer. The writer never waits for space: when a
block does not fit, the oldest samples are overwritten (drop-oldest) and counted in
:attr:`overflows` (write calls that dropped) and :attr:`dropped_samples`. Safe for any
number of producers and consumers; :meth:`wait` lets a consumer sleep until data arrives.
"""
from __future__ import annotations

import threading

import numpy as np

from sdk.errors import PreprocessError

__all__ = ["AudioRingBuffer"]


class AudioRingBuffer:
    """Drop-oldest ring buffer of ``capacity`` samples (frames) x ``channels``.

    Blocks are ``(n,)`` (mono) or ``(n, channels)``; reads return ``(n,)`` when
    ``channels == 1`` and ``(n, channels)`` otherwise, always as fresh copies.
    """

    def __init__(self, capacity: int, channels: int = 1, dtype=np.float32):
        if int(capacity) <= 0 or int(channels) <= 0:
            raise ValueError(f"capacity and channels must be positive, got {capacity}, {channels}")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self.dtype = np.dtype(dtype)
        self._buf = np.zeros((self.capacity, self.channels), dtype=self.dtype)
        self._start = 0          # index of the oldest sample
        self._count = 0          # samples currently held
        self._cond = threading.Condition(threading.Lock())
        self.overflows = 0
        self.dropped_samples = 0
        self.total_written = 0

    # -- helpers ---------------------------------------------------------------------
    def _as_block(self, block) -> np.ndarray:
        b = np.asarray(block)
        if b.ndim == 1 and self.channels == 1:
            b = b[:, None]
        if b.ndim != 2 or b.shape[1] != self.channels:
            exp = "(n,) or (n, 1)" if self.channels == 1 else f"(n, {self.channels})"
            raise PreprocessError(
                f"AudioRingBuffer: expected a block of shape {exp}, got shape {b.shape}")
        return b

    def _copy_out(self, start: int, n: int) -> np.ndarray:
        end = start + n
        if end <= self.capacity:
            out = self._buf[start:end].copy()
        else:
            out = np.concatenate([self._buf[start:], self._buf[: end - self.capacity]])
        return out[:, 0] if self.channels == 1 else out

    # -- producer --------------------------------------------------------------------
    def write(self, block) -> int:
        """Append a block; returns how many samples were dropped (oldest first) to fit it."""
        b = self._as_block(block)
        n = b.shape[0]
        if n == 0:
            return 0
        with self._cond:
            dropped = 0
            if n >= self.capacity:
                dropped = self._count + (n - self.capacity)
                b = b[n - self.capacity:]
                self._buf[:] = b
                self._start, self._count = 0, self.capacity
            else:
                over = self._count + n - self.capacity
                if over > 0:
                    dropped = over
                    self._start = (self._start + over) % self.capacity
                    self._count -= over
                wpos = (self._start + self._count) % self.capacity
                first = min(n, self.capacity - wpos)
                self._buf[wpos:wpos + first] = b[:first]
                if first < n:
                    self._buf[: n - first] = b[first:]
                self._count += n
            if dropped:
                self.overflows += 1
                self.dropped_samples += dropped
            self.total_written += n
            self._cond.notify_all()
        return dropped

    # -- consumer --------------------------------------------------------------------
    @property
    def available(self) -> int:
        """Samples ready to read."""
        with self._cond:
            return self._count

    def read(self, n: int) -> np.ndarray:
        """Remove and return up to ``n`` of the oldest samples (fewer if fewer are there)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        with self._cond:
            k = min(int(n), self._count)
            out = self._copy_out(self._start, k)
            self._start = (self._start + k) % self.capacity
            self._count -= k
        return out

    def read_available(self) -> np.ndarray:
        """Remove and return everything buffered."""
        return self.read(self.capacity)

    def read_exact(self, n: int, timeout: float | None = None) -> np.ndarray | None:
        """Wait until ``n`` samples are there, then read them; ``None`` on timeout.

        ``n`` must not exceed ``capacity``.
        """
        if n > self.capacity:
            raise ValueError(f"n={n} exceeds the capacity {self.capacity}")
        with self._cond:
            if not self._cond.wait_for(lambda: self._count >= n, timeout):
                return None
            out = self._copy_out(self._start, n)
            self._start = (self._start + n) % self.capacity
            self._count -= n
        return out

    def wait(self, n: int = 1, timeout: float | None = None) -> bool:
        """Block until at least ``n`` samples are available; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count >= n, timeout)

    def peek_last(self, n: int) -> np.ndarray:
        """The newest ``min(n, available)`` samples, without consuming them."""
        with self._cond:
            k = min(int(n), self._count)
            start = (self._start + self._count - k) % self.capacity
            return self._copy_out(start, k)

    def clear(self) -> None:
        """Drop everything buffered (counters are kept)."""
        with self._cond:
            self._start = 0
            self._count = 0

    def __len__(self) -> int:
        return self.available

    def __repr__(self) -> str:
        return (f"AudioRingBuffer(capacity={self.capacity}, channels={self.channels}, "
                f"available={self._count}, overflows={self.overflows}, "
                f"dropped_samples={self.dropped_samples})")
