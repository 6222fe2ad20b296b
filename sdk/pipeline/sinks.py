"""Sinks: where pipeline results go. Each has ``write(item)``, ``close()`` and ``with``.

They accept the pipeline items (:class:`Frame`, :class:`AudioBlock`) or bare arrays/dicts.
"""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import wave
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sdk.closing import Closing
from sdk.errors import PipelineError
from sdk.pipeline.items import AudioBlock, Frame

__all__ = ["VideoWriterSink", "WavSink", "JsonlSink"]


class _Sink(Closing, ABC):
    closed = False

    @abstractmethod
    def write(self, item: Any) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __call__(self, item: Any) -> None:
        self.write(item)


class VideoWriterSink(_Sink):
    """Write BGR frames to a video file (``cv2.VideoWriter``, codec ``mp4v`` by default).

    ``size`` is ``(height, width)``; if omitted it is taken from the first frame. Frames of
    another size are resized; gray frames are converted to BGR. Opening is checked
    (``isOpened``): a writer that would silently write nothing raises PipelineError.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30.0,
                 size: tuple[int, int] | None = None, fourcc: str = "mp4v"):
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if len(fourcc) != 4:
            raise ValueError(f"fourcc must be 4 characters, got {fourcc!r}")
        self.path = Path(path)
        self.fps = float(fps)
        self.size: tuple[int, int] | None = (int(size[0]), int(size[1])) if size else None
        self.fourcc = fourcc
        self.frames = 0
        self._w: cv2.VideoWriter | None = None
        if self.size:
            self._open(self.size)

    def _open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        h, w = size
        fourcc = cv2.VideoWriter.fourcc(*self.fourcc)
        writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (int(w), int(h)))
        if writer.isOpened():
            self.size, self._w = size, writer
            return writer
        writer.release()
        raise PipelineError(f"cv2.VideoWriter could not open {self.path} with codec "
                                f"{self.fourcc!r} at {w}x{h} (unsupported codec/extension or "
                                f"unwritable path)")

    def write(self, item: Any) -> None:
        img = item.data if isinstance(item, Frame) else item
        if not isinstance(img, np.ndarray) or img.ndim not in (2, 3) or img.size == 0:
            raise PipelineError(f"VideoWriterSink: expected an HxWx3 uint8 frame, got "
                                f"{getattr(img, 'shape', type(img).__name__)}")
        if self.closed:
            raise PipelineError(f"VideoWriterSink {self.path} is closed")
        if img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
        if img.ndim == 2 or img.shape[2] == 1:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        writer = self._w if self._w is not None else self._open((img.shape[0], img.shape[1]))
        h, w = self.size or img.shape[:2]
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        writer.write(np.ascontiguousarray(img))
        self.frames += 1

    def close(self) -> None:
        if self._w is not None:
            self._w.release()
            self._w = None
        self.closed = True


class WavSink(_Sink):
    """Append audio (float in [-1, 1] or int16, ``(n,)`` or ``(n, channels)``) to a 16-bit
    PCM WAV file (stdlib ``wave``). The header is finalised on ``close()``."""

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int = 1):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self._w = wave.open(str(self.path), "wb")
        self._w.setnchannels(self.channels)
        self._w.setsampwidth(2)
        self._w.setframerate(self.sample_rate)
        self.frames = 0

    def write(self, item: Any) -> None:
        item = AudioBlock.samples_of(item, self.sample_rate, PipelineError, f"WavSink {self.path}")
        x = np.asarray(item)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise PipelineError(f"WavSink {self.path}: expected audio of shape (n, {self.channels})"
                                f"{' or (n,)' if self.channels == 1 else ''}, got {x.shape}")
        if self.closed:
            raise PipelineError(f"WavSink {self.path} is closed")
        if x.dtype != np.int16:
            x = np.clip(np.rint(np.clip(x, -1.0, 1.0) * 32767.0), -32768, 32767)
        self._w.writeframes(x.astype("<i2").tobytes())
        self.frames += x.shape[0]

    def close(self) -> None:
        if not self.closed:
            self._w.close()
            self.closed = True


def _json_default(o: Any):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if isinstance(o, (Path, os.PathLike)):
        return str(o)
    raise TypeError(f"JsonlSink cannot serialise {type(o).__name__}")


class JsonlSink(_Sink):
    """Append one JSON object per line (flushed per line, so a crash loses nothing written).

    Accepts dicts, pydantic models, dataclasses; numpy arrays/scalars become lists/numbers.
    """

    def __init__(self, path: str | os.PathLike, append: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a" if append else "w", encoding="utf-8")
        self._lock = threading.Lock()
        self.lines = 0

    def write(self, item: Any) -> None:
        if hasattr(item, "model_dump"):
            item = item.model_dump(mode="json")
        line = json.dumps(item, default=_json_default, ensure_ascii=False)
        with self._lock:
            if self.closed:
                raise PipelineError(f"JsonlSink {self.path} is closed")
            self._f.write(line + "\n")
            self._f.flush()
            self.lines += 1

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self._f.close()
                self.closed = True
