"""Frame sources for the app: open a SOURCE argument, and feed frames offline or live.

``open_source`` maps the CLI's SOURCE onto the SDK's sources: a camera index (``0``) or a
stream URL -> ``CameraSource``; a folder -> ``ImageFolderSource``; a file -> ``VideoSource``.

``offline_frames`` yields every frame of a source with its decode time and its time on the
source's own timeline (``Frame.meta["pos_ms"]`` for files); live mode is
``sdk.pipeline.StreamingPipeline`` (see ``pipeline.py``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from sdk.errors import PipelineError

URL_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://")


def open_source(spec: str | int | Path):
    """A SDK source for a camera index, a stream URL, a folder of images or a video file."""
    from sdk.pipeline import CameraSource, ImageFolderSource, VideoSource

    text = str(spec)
    if isinstance(spec, int) or text.isdigit():
        return CameraSource(int(text))
    if text.startswith(URL_PREFIXES):
        return CameraSource(text)
    path = Path(text)
    if path.is_dir():
        return ImageFolderSource(path)
    if path.is_file():
        return VideoSource(path)
    raise FileNotFoundError(f"source {text!r} is neither a camera index, a stream URL, a folder nor a file")


def is_camera(source: Any) -> bool:
    """A live device or stream (``CameraSource``): its failures are 'unavailable', not bad input."""
    return type(source).__name__ == "CameraSource"


def frame_fields(item: Any, n: int, fps: float) -> tuple[int, np.ndarray, float]:
    """(index, BGR image, seconds on the source's timeline) of an SDK ``Frame`` or a bare array."""
    if isinstance(item, np.ndarray):
        return n, item, n / fps
    image = getattr(item, "data", None)
    if image is None:
        image = getattr(item, "image", None)
    if not isinstance(image, np.ndarray):
        raise PipelineError(f"source item {type(item).__name__} carries no image array (.data)")
    index = int(getattr(item, "index", n))
    meta = getattr(item, "meta", None) or {}
    if "pos_ms" in meta:
        return index, image, float(meta["pos_ms"]) / 1000.0
    return index, image, index / fps


def offline_frames(source: Iterable, fps: float, max_frames: int | None = None,
                   errors: list[str] | None = None) -> Iterator[tuple[int, np.ndarray, float, float]]:
    """Every frame of ``source`` as (index, image, t_media, decode seconds); closes the source.

    With ``errors`` (a list), a source that raises ends the frames cleanly and its error is
    appended there (as a live ``StreamingPipeline`` keeps it in ``stats.source_error``)."""
    n = 0
    try:
        it = iter(source)
    except Exception as exc:
        if errors is None:
            raise
        errors.append(f"{type(exc).__name__}: {exc}")
        return
    try:
        while max_frames is None or n < max_frames:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                break
            except Exception as exc:
                if errors is None:
                    raise
                errors.append(f"{type(exc).__name__}: {exc}")
                break
            decode = time.perf_counter() - t0
            index, image, t = frame_fields(item, n, fps)
            n += 1
            yield index, image, t, decode
    finally:
        close = getattr(it, "close", None)
        if callable(close):
            close()


def source_problems(source: Any, errors: list[str], delivered: int, max_frames: int | None
                    ) -> list[tuple[str, str]]:
    """(health level, reason) for what went wrong with the source itself, once it has ended:
    it failed or delivered nothing (FAILED), a camera stopped (FAILED), a file ended before
    its declared frame count or images were unreadable (DEGRADED)."""
    camera = is_camera(source)
    out: list[tuple[str, str]] = []
    if errors:
        what = "camera unavailable" if camera and delivered == 0 else "source failed"
        out.append(("FAILED", f"{what}: {errors[0]}"))
    elif delivered == 0:
        out.append(("FAILED", "no frames: the source delivered none"
                    + (" (camera or stream unavailable)" if camera else "")))
    elif camera and (max_frames is None or delivered < max_frames):
        out.append(("FAILED", f"camera stopped delivering frames after {delivered}"))
    declared = getattr(source, "frame_count", None)
    if not errors and isinstance(declared, int) and delivered < declared and \
            (max_frames is None or delivered < max_frames):
        out.append(("DEGRADED", f"source ended at frame {delivered} of {declared} declared (truncated or "
                                f"corrupt file)"))
    skipped = getattr(source, "skipped", 0)
    if skipped and delivered:
        out.append(("DEGRADED", f"{skipped} unreadable image(s) skipped"))
    elif skipped:
        out.append(("FAILED", f"all {skipped} image(s) unreadable"))
    return out
