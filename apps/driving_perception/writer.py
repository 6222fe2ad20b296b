"""A video sink timed into a latency recorder, on its own writer thread when asked."""
from __future__ import annotations

import threading
import time

from sdk.runtime import LatencyRecorder


class TimedWriter:
    """A sink whose ``write`` is timed into ``recorder``; on a writer thread when ``threaded``
    (a bounded queue of 2 frames: the producer waits rather than drop, offline or live)."""

    def __init__(self, sink, recorder: LatencyRecorder, threaded: bool):
        import queue

        self.sink, self.recorder = sink, recorder
        self._q: queue.Queue | None = queue.Queue(maxsize=2) if threaded else None
        self._error: BaseException | None = None
        if self._q is not None:
            self._thread = threading.Thread(target=self._loop, name="drive-video-writer", daemon=True)
            self._thread.start()

    def _write(self, frame) -> None:
        t0 = time.perf_counter()
        self.sink.write(frame)
        self.recorder.record_ms((time.perf_counter() - t0) * 1e3)

    def _loop(self) -> None:
        while True:
            frame = self._q.get()
            if frame is None:
                return
            if self._error is None:
                try:
                    self._write(frame)
                except BaseException as exc:  # surfaced on the next write / close
                    self._error = exc

    def write(self, frame) -> None:
        if self._error is not None:
            raise self._error
        if self._q is None:
            self._write(frame)
        else:
            self._q.put(frame)

    def close(self) -> None:
        if self._q is not None:
            self._q.put(None)
            self._thread.join()
        self.sink.close()
        if self._error is not None:
            raise self._error
