"""Sources: iterables of timestamped :class:`Frame` / :class:`AudioBlock` items.

Each source can be iterated directly (``for frame in VideoSource(p): ...``) or handed to a
:class:`~sdk.pipeline.StreamingPipeline`. Files and devices are opened when iteration
starts and released when it ends (also when the consumer stops early).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from sdk._log import logger
from sdk.errors import DecodeError, PipelineError
from sdk.pipeline.items import AudioBlock, Frame
from sdk.pipeline.wavfile import WavReader

__all__ = ["ImageFolderSource", "VideoSource", "CameraSource", "WavSource"]

IMAGE_PATTERNS = ("*.jpg", "*.jpeg", "*.png", "*.bmp", "*.tif", "*.tiff", "*.webp")


class ImageFolderSource:
    """Images in a folder (sorted by path), decoded with OpenCV as BGR (``flags``).

    Unreadable files are logged, counted in ``skipped`` (paths in ``skipped_paths``) and
    skipped; they never end the stream. ``meta["path"]`` holds each file's path.
    """

    def __init__(self, directory: str | os.PathLike, patterns: Sequence[str] = IMAGE_PATTERNS,
                 recursive: bool = False, flags: int = cv2.IMREAD_COLOR):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.directory}")
        self.patterns = tuple(patterns)
        self.recursive = recursive
        self.flags = flags
        self.skipped = 0
        self.skipped_paths: list[Path] = []

    def paths(self) -> list[Path]:
        glob = self.directory.rglob if self.recursive else self.directory.glob
        found = {p for pat in self.patterns for p in glob(pat) if p.is_file()}
        found |= {p for pat in self.patterns for p in glob(pat.upper()) if p.is_file()}
        return sorted(found)

    def __len__(self) -> int:
        return len(self.paths())

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        for p in self.paths():
            try:
                buf = np.fromfile(p, dtype=np.uint8)     # works with non-ASCII paths
                img = cv2.imdecode(buf, self.flags) if buf.size else None
            except (OSError, cv2.error) as exc:
                logger.warning("skipping unreadable image %s: %s", p, exc)
                img = None
            if img is None:
                logger.warning("skipping %s: not a decodable image", p)
                self.skipped += 1
                self.skipped_paths.append(p)
                continue
            yield Frame(index, time.monotonic(), img, {"path": str(p)})
            index += 1


def _fps(cap) -> float | None:
    fps = cap.get(cv2.CAP_PROP_FPS)
    return float(fps) if fps and math.isfinite(fps) and 0 < fps < 1000 else None


class VideoSource:
    """Frames of a video file (``cv2.VideoCapture``), BGR uint8.

    ``realtime=True`` paces frames by the file's FPS on a real clock (as a camera would
    deliver them, so a slow consumer sees drops); ``realtime=False`` reads as fast as the
    consumer pulls. ``meta`` holds ``pos_ms`` (the frame's time in the video).
    A missing file raises FileNotFoundError; a file OpenCV cannot open raises DecodeError.
    """

    def __init__(self, path: str | os.PathLike, realtime: bool = False,
                 fps: float | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file not found: {self.path}")
        cap = self._open()
        try:
            self.fps = fps or _fps(cap) or 30.0
            self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            self.size = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
        finally:
            cap.release()
        self.realtime = realtime

    def _open(self):
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise DecodeError(f"OpenCV could not open the video {self.path} (unsupported codec or "
                              f"corrupt file)")
        return cap

    def __iter__(self) -> Iterator[Frame]:
        cap = self._open()
        try:
            t0 = time.monotonic()
            index = 0
            while True:
                if self.realtime:
                    delay = t0 + index / self.fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                ok, img = cap.read()
                if not ok or img is None:
                    break
                yield Frame(index, time.monotonic(), img,
                            {"pos_ms": index * 1000.0 / self.fps, "path": str(self.path)})
                index += 1
        finally:
            cap.release()


class CameraSource:
    """Live frames from a camera index (0, 1...) or a stream URL (RTSP/HTTP), via OpenCV.

    Opened when iteration starts; a camera that cannot be opened raises PipelineError.
    The stream ends when the camera stops delivering frames (``max_failures`` reads in a row).
    Use it with ``StreamingPipeline(drop="oldest")`` so a slow model never falls behind.
    """

    def __init__(self, index_or_url: int | str = 0, size: tuple[int, int] | None = None,
                 fps: float | None = None, max_failures: int = 5):
        self.target = index_or_url
        self.size = size          # (height, width) request; the camera may ignore it
        self.fps = fps
        self.max_failures = max_failures

    def __iter__(self) -> Iterator[Frame]:
        cap = cv2.VideoCapture(self.target)
        try:
            if not cap.isOpened():
                raise PipelineError(f"could not open camera {self.target!r} (no such device, "
                                    f"busy, or no permission)")
            if self.size:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[0])
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[1])
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
            index, failures = 0, 0
            while failures < self.max_failures:
                ok, img = cap.read()
                t = time.monotonic()
                if not ok or img is None:
                    failures += 1
                    time.sleep(0.01)
                    continue
                failures = 0
                yield Frame(index, t, img, {"camera": self.target})
                index += 1
            logger.warning("camera %r stopped delivering frames", self.target)
        finally:
            cap.release()


class WavSource:
    """Blocks of a WAV file as :class:`AudioBlock` (float32 in [-1, 1]).

    PCM 8/16/24/32-bit and float 32/64-bit; ``mono=True`` averages the channels. A corrupt
    or truncated file raises DecodeError when the source is created. ``realtime=True``
    paces the blocks at the audio's own rate (a stand-in for a microphone).
    """

    def __init__(self, path: str | os.PathLike, block_size: int = 1024, mono: bool = True,
                 realtime: bool = False):
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.path = Path(path)
        with WavReader(self.path) as r:      # validates the header and the length now
            self.info = r.info
        self.sample_rate = self.info.sample_rate
        self.block_size = int(block_size)
        self.mono = mono
        self.realtime = realtime

    def __iter__(self) -> Iterator[AudioBlock]:
        with WavReader(self.path) as r:
            t0 = time.monotonic()
            done = 0
            for index, x in enumerate(r.blocks(self.block_size)):
                if self.realtime:
                    delay = t0 + (done + len(x)) / self.sample_rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                done += len(x)
                if self.mono:
                    x = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
                yield AudioBlock(index, time.monotonic(), np.ascontiguousarray(x),
                                 self.sample_rate, {"path": str(self.path)})
