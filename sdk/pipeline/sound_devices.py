"""Microphone and speaker through ``sounddevice`` (PortAudio), imported only when opened.

``import sdk.pipeline`` never touches sounddevice. Where PortAudio is missing, sounddevice
raises ``OSError`` at import (not ImportError); both become
:class:`~sdk.errors.AudioDeviceError` with the install command.

The PortAudio callbacks only copy into / out of an :class:`~sdk.preprocess.AudioRingBuffer`
(whose lock is held just for the copy) and count status flags; they never wait, allocate
large buffers or log.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import numpy as np

from sdk._log import logger
from sdk.errors import AudioDeviceError
from sdk.pipeline.items import AudioBlock
from sdk.preprocess.ring import AudioRingBuffer

__all__ = ["import_sounddevice", "list_audio_devices", "MicrophoneSource", "SpeakerSink"]

PORTAUDIO_HELP = ("install it (Debian/Ubuntu: apt install libportaudio2; Fedora: dnf install "
                  "portaudio; macOS: brew install portaudio; Windows: the sounddevice wheel "
                  "bundles it)")


def import_sounddevice():
    """Import sounddevice or raise AudioDeviceError saying what to install."""
    try:
        import sounddevice as sd
    except OSError as exc:  # sounddevice could not load the PortAudio shared library
        raise AudioDeviceError(f"PortAudio not found: {PORTAUDIO_HELP}, then retry "
                               f"(sounddevice said: {exc})") from exc
    except ImportError as exc:
        raise AudioDeviceError(
            f"the sounddevice package could not be imported ({exc}): run `pip install "
            f"sounddevice` (a dependency of edgewise); if PortAudio is missing, "
            f"{PORTAUDIO_HELP}") from exc
    return sd


def list_audio_devices() -> list[dict[str, Any]]:
    """Audio devices PortAudio sees: index, name, host API, channels, default rate and
    whether it is the default input/output. AudioDeviceError without PortAudio."""
    sd = import_sounddevice()
    try:
        devices = sd.query_devices()
        apis = sd.query_hostapis()
        default_in, default_out = sd.default.device
    except Exception as exc:
        raise AudioDeviceError(f"could not list audio devices: {exc}") from exc
    out = []
    for i, d in enumerate(devices):
        out.append({
            "index": i, "name": d["name"], "hostapi": apis[d["hostapi"]]["name"],
            "max_input_channels": int(d["max_input_channels"]),
            "max_output_channels": int(d["max_output_channels"]),
            "default_samplerate": float(d["default_samplerate"]),
            "default_input": i == default_in, "default_output": i == default_out,
        })
    return out


_FLAGS = ("input_overflow", "input_underflow", "output_overflow", "output_underflow",
          "priming_output")


def _count_status(counts: dict[str, int], status) -> None:
    if status:
        for flag in _FLAGS:
            if getattr(status, flag, False):
                counts[flag] += 1


class MicrophoneSource:
    """Live microphone audio as :class:`AudioBlock` items of ``block_size`` samples.

    The PortAudio callback copies each buffer into a ring of ``buffer_s`` seconds; when the
    consumer falls that far behind, the oldest audio is dropped (``ring.dropped_samples``).
    PortAudio's status flags are counted in ``status_counts`` (``input_overflow``...).
    ``t_capture`` of a block is the estimated capture time of its last sample (the time of the
    latest callback, less PortAudio's reported input latency, less the audio still buffered
    after the block). Iteration
    opens the stream (unless ``open()`` was called) and ends after ``close()`` or when the
    stream stops (device lost), after a last, possibly shorter, block.
    """

    def __init__(self, sample_rate: int = 16000, block_size: int = 1600, device=None,
                 channels: int = 1, mono: bool = True, buffer_s: float = 10.0,
                 dtype: str = "float32"):
        if sample_rate <= 0 or block_size <= 0 or channels <= 0:
            raise ValueError(f"sample_rate, block_size and channels must be positive, got "
                             f"{sample_rate}, {block_size}, {channels}")
        self.sample_rate, self.block_size, self.device = int(sample_rate), int(block_size), device
        self.channels, self.mono, self.dtype = int(channels), mono, dtype
        cap = max(int(buffer_s * sample_rate), 2 * self.block_size)
        self.ring = AudioRingBuffer(cap, self.channels, np.float32)
        self.status_counts = {f: 0 for f in _FLAGS}
        self.callbacks = 0
        self._stream = None
        self._closing = threading.Event()
        self._t_newest: float | None = None

    def _callback(self, indata, frames, time_info, status) -> None:
        _count_status(self.status_counts, status)
        self.callbacks += 1
        self.ring.write(indata)
        # when the newest sample was captured: now, less PortAudio's input latency for this buffer
        lag = 0.0
        try:
            lag = float(time_info.currentTime - time_info.inputBufferAdcTime) - frames / self.sample_rate
        except (AttributeError, TypeError):   # no timing from the host API (or a test's fake)
            pass
        self._t_newest = time.monotonic() - (lag if 0.0 < lag < 1.0 else 0.0)

    def open(self) -> "MicrophoneSource":
        if self._stream is not None:
            return self
        sd = import_sounddevice()
        self._closing.clear()
        try:
            stream = sd.InputStream(samplerate=self.sample_rate, blocksize=self.block_size,
                                    device=self.device, channels=self.channels,
                                    dtype=self.dtype, callback=self._callback)
            stream.start()
        except Exception as exc:  # sd.PortAudioError, ValueError (bad device/rate)
            raise AudioDeviceError(
                f"could not open microphone {self.device if self.device is not None else '(default)'}"
                f" at {self.sample_rate} Hz, {self.channels} channel(s): {exc}. "
                f"See sdk.pipeline.list_audio_devices() for the devices here") from exc
        self._stream = stream
        return self

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    def close(self) -> None:
        self._closing.set()
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception as exc:
                logger.warning("closing the microphone stream failed: %s", exc)

    def __enter__(self) -> "MicrophoneSource":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[AudioBlock]:
        opened_here = self._stream is None
        self.open()
        try:
            index = 0
            while not self._closing.is_set():
                x = self.ring.read_exact(self.block_size, timeout=0.1)
                if x is None:
                    stream = self._stream
                    if stream is not None and getattr(stream, "active", True):
                        continue                     # just waiting for audio
                    x = self.ring.read_available()   # the stream ended: flush the tail
                    if len(x) == 0:
                        break
                t_newest = self._t_newest if self._t_newest is not None else time.monotonic()
                t_last = t_newest - self.ring.available / self.sample_rate
                if self.mono and x.ndim == 2:
                    x = x.mean(axis=1, dtype=np.float32)
                yield AudioBlock(index, t_last, x, self.sample_rate, {"device": self.device})
                index += 1
        finally:
            if opened_here:
                self.close()


class SpeakerSink:
    """Play audio blocks through an output device.

    ``write`` copies into a ring of ``buffer_s`` seconds (never blocks; when writing faster
    than real time the oldest audio is dropped and counted in ``ring.dropped_samples``);
    the PortAudio callback pulls from it and plays silence when it runs dry, counted in
    ``underruns`` (plus PortAudio's own ``status_counts["output_underflow"]``).
    ``close(drain=True)`` waits for the buffered audio to play out first (by default at
    most its duration + 2 s: PulseAudio can take over a second to start pulling).
    """

    def __init__(self, sample_rate: int = 16000, channels: int = 1, device=None,
                 buffer_s: float = 2.0, block_size: int = 0):
        if sample_rate <= 0 or channels <= 0:
            raise ValueError(f"sample_rate and channels must be positive, got {sample_rate}, {channels}")
        self.sample_rate, self.channels, self.device = int(sample_rate), int(channels), device
        self.block_size = int(block_size)
        self.ring = AudioRingBuffer(max(int(buffer_s * sample_rate), 1024), self.channels)
        self.status_counts = {f: 0 for f in _FLAGS}
        self.underruns = 0
        self.callbacks = 0
        self._stream = None
        self.closed = False

    def _callback(self, outdata, frames, time_info, status) -> None:
        _count_status(self.status_counts, status)
        self.callbacks += 1
        x = self.ring.read(frames)
        n = x.shape[0]
        if self.channels == 1:
            outdata[:n, 0] = x
        else:
            outdata[:n] = x
        if n < frames:
            outdata[n:] = 0
            if self.ring.total_written:       # silence before the first write is not an underrun
                self.underruns += 1

    def open(self) -> "SpeakerSink":
        if self._stream is not None:
            return self
        sd = import_sounddevice()
        try:
            stream = sd.OutputStream(samplerate=self.sample_rate, blocksize=self.block_size,
                                     device=self.device, channels=self.channels,
                                     dtype="float32", callback=self._callback)
            stream.start()
        except Exception as exc:
            raise AudioDeviceError(
                f"could not open speaker {self.device if self.device is not None else '(default)'}"
                f" at {self.sample_rate} Hz, {self.channels} channel(s): {exc}") from exc
        self._stream = stream
        return self

    def write(self, item: Any) -> int:
        """Queue audio for playback; returns how many samples were dropped to make room."""
        item = AudioBlock.samples_of(item, self.sample_rate, AudioDeviceError, "SpeakerSink")
        if self.closed:
            raise AudioDeviceError("SpeakerSink is closed")
        dropped = self.ring.write(np.asarray(item, dtype=np.float32))
        self.open()                        # after the write: the first callback has audio
        return dropped

    __call__ = write

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            if drain:
                limit = time.monotonic() + (timeout if timeout is not None
                                            else self.ring.available / self.sample_rate + 2.0)
                while self.ring.available and time.monotonic() < limit:
                    time.sleep(0.01)
            try:
                stream.stop()
                stream.close()
            except Exception as exc:
                logger.warning("closing the speaker stream failed: %s", exc)
        self.closed = True

    def __enter__(self) -> "SpeakerSink":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
