"""The live microphone as a pipeline source that survives device loss.

It yields 512-sample chunks at 16 kHz (``sdk.pipeline.AudioBlock``), each stamped with the
capture time of its last sample, and marks the first chunk of every (re)opened stream with
``meta["new_stream"]`` (a discontinuity: the segmenter forgets a cut utterance).

Device loss (the input stream stops, or PortAudio raises) and a refused sample rate raise
``AudioDeviceError`` while reading; it is reported as a ``device_error`` event and the
stream is reopened with exponential back-off (``reopen_initial_s`` doubling up to
``reopen_max_s``). A device that refuses 16 kHz is reopened at its own default rate and
resampled. After ``max_reopen_attempts`` failures in a row the source ends and keeps the
error in ``error``.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator

import numpy as np

from apps.mobile_translation.asr.base import SAMPLE_RATE
from apps.mobile_translation.vad import CHUNK
from sdk import logger
from sdk.errors import AudioDeviceError
from sdk.pipeline import AudioBlock


class ReopeningMicrophone:
    """``source_factory(sample_rate, block_size, device, buffer_s)`` opened (and reopened) as needed."""

    def __init__(self, cfg, source_factory: Callable, device_rate: Callable[[Any], int | None],
                 emit: Callable[..., None]):
        self.cfg, self.factory, self.device_rate, self.emit = cfg, source_factory, device_rate, emit
        self._stop = threading.Event()
        self._current = None
        self.error: BaseException | None = None
        self.streams_opened = self.device_errors = self.reopens = 0
        self.status_counts: dict[str, int] = {}
        self.dropped_samples = 0

    def close(self) -> None:
        """Stop: the reader blocked on the device wakes up and the iteration ends."""
        self._stop.set()
        src = self._current
        if src is not None and hasattr(src, "close"):
            src.close()

    def __iter__(self) -> Iterator[AudioBlock]:
        delay, failures, rate = self.cfg.reopen_initial_s, 0, SAMPLE_RATE
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                yield from self._stream_once(rate)
                return
            except AudioDeviceError as exc:
                if self._stop.is_set():
                    return
                if time.monotonic() - started > 5 * self.cfg.reopen_max_s:  # it ran well for a while
                    failures, delay = 0, self.cfg.reopen_initial_s
                failures += 1
                self.device_errors += 1
                msg = str(exc)
                if rate == SAMPLE_RATE and "rate" in msg.lower():
                    dev_rate = self.device_rate(self.cfg.input_device)
                    if dev_rate and dev_rate != SAMPLE_RATE:
                        rate = dev_rate
                        msg += f"; reopening at the device's own {dev_rate} Hz and resampling"
                self.emit("device_error", message=msg, retry_in_s=delay, failures=failures)
                logger.warning("audio input: %s; reopening in %.1f s", msg, delay)
                if self.cfg.max_reopen_attempts is not None and failures > self.cfg.max_reopen_attempts:
                    self.error = exc
                    return
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.cfg.reopen_max_s)
                self.reopens += 1
                self.emit("reopened", message=f"reopening the input stream (attempt {failures})")

    def _stream_once(self, rate: int) -> Iterator[AudioBlock]:
        """Chunks of one opened stream until stop; AudioDeviceError on loss."""
        src = self.factory(rate, CHUNK * rate // SAMPLE_RATE, self.cfg.input_device, self.cfg.buffer_s)
        self._current = src
        try:
            if hasattr(src, "open"):
                src.open()
            self.streams_opened += 1
            self.emit("stream_open", sample_rate=rate)
            index, carry, new = 0, np.zeros(0, np.float32), True
            for block in src:
                if self._stop.is_set():
                    return
                x = np.asarray(block.samples, np.float32).reshape(-1)
                if block.sample_rate != SAMPLE_RATE:
                    from sdk.preprocess import resample

                    x = resample(x, block.sample_rate, SAMPLE_RATE).astype(np.float32)
                x = np.concatenate([carry, x]) if len(carry) else x
                n = len(x) // CHUNK
                carry = x[n * CHUNK:]
                for i in range(n):
                    # block.t_capture is the capture time of the block's last sample
                    t = block.t_capture - (len(x) - (i + 1) * CHUNK) / SAMPLE_RATE
                    yield AudioBlock(index, t, x[i * CHUNK:(i + 1) * CHUNK], SAMPLE_RATE, {"new_stream": new})
                    index, new = index + 1, False
            if not self._stop.is_set():
                raise AudioDeviceError("the input stream stopped delivering audio (device unplugged or lost)")
        except AudioDeviceError:
            raise
        except Exception as exc:  # PortAudio errors surface as various types
            if self._stop.is_set():
                return
            raise AudioDeviceError(f"audio input failed: {exc}") from exc
        finally:
            for k, v in (getattr(src, "status_counts", None) or {}).items():
                self.status_counts[k] = self.status_counts.get(k, 0) + int(v)
            ring = getattr(src, "ring", None)
            if ring is not None:
                self.dropped_samples += int(getattr(ring, "dropped_samples", 0))
            if hasattr(src, "close"):
                src.close()
            self._current = None
