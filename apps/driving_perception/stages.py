"""The frame that travels through the drive stages, the source that feeds them, and the sinks.

    decode (source) ─> detect ─> track ─> lanes ─> warnings ─> annotate ─> sinks

A :class:`FrameJob` carries one frame and what each stage found; ``DriveSinks`` writes the
outputs (``events.jsonl``, ``frames.jsonl``, ``annotated.mp4``) and tells the health monitor
how long the frame took.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .sources import frame_fields, offline_frames
from .writer import TimedWriter


@dataclass
class FrameJob:
    """One frame on its way through the stages."""

    index: int
    image: np.ndarray
    t_media: float                 # seconds on the source's own timeline
    t_capture: float               # time.monotonic() when it was captured or read
    t: float = 0.0                 # the health monitor's clock when detection started
    started: float = 0.0           # perf_counter() when detection started (frame_done)
    dets: Any = None
    valid: bool = True
    model_s: float | None = None   # the detector's model time (None without a detector)
    lanes_job: Any = None          # a Future when lanes run beside the detector
    tracks: Any = None
    lanes: Any = None
    result: Any = None             # the FrameResult
    frame: np.ndarray | None = None  # the annotated image


def decoded_frames(source: Iterable, fps: float, max_frames: int | None, errors: list[str],
                   record_decode: Callable[[float], None]) -> Iterator[FrameJob]:
    """Offline: every frame of ``source`` (decode time recorded), as jobs."""
    for index, image, t_media, decode_s in offline_frames(source, fps, max_frames, errors):
        record_decode(decode_s)
        yield FrameJob(index, image, t_media, time.monotonic())


def live_frames(items: Iterable, fps: float) -> Iterator[FrameJob]:
    """Live: frames as the source delivers them (``t_capture`` from the frame when it has one)."""
    for n, item in enumerate(items):
        index, image, t_media = frame_fields(item, n, fps)
        t = getattr(item, "t_capture", None)
        yield FrameJob(index, image, t_media, float(t) if isinstance(t, (int, float)) else time.monotonic())


class DriveSinks:
    """events.jsonl, frames.jsonl and (``annotate``) the annotated video of one run."""

    def __init__(self, paths: dict[str, Path], fps: float, encode_recorder, parallel_encode: bool,
                 annotate: bool, health, progress=None):
        from sdk.pipeline import JsonlSink

        self.paths, self.fps, self.health, self.progress = paths, fps, health, progress
        self.encode_recorder, self.parallel_encode, self.annotate = encode_recorder, parallel_encode, annotate
        self.events_sink = JsonlSink(paths["events"], append=False)
        self.frames_sink = JsonlSink(paths["frames"], append=False)
        self.writer: TimedWriter | None = None
        self.events = 0
        self.last, self.t_last = -1, 0.0

    def event(self, ev: dict) -> None:
        self.events_sink.write(ev)
        self.events += 1

    def write(self, job: FrameJob) -> None:
        for ev in job.result.events:
            self.event(ev)
        self.frames_sink.write(job.result.to_record())
        if self.annotate and job.frame is not None:
            if self.writer is None:
                from sdk.pipeline import VideoWriterSink

                self.writer = TimedWriter(VideoWriterSink(self.paths["video"], fps=self.fps),
                                          self.encode_recorder, self.parallel_encode)
            self.writer.write(job.frame)
        self.health.frame_done(time.perf_counter() - job.started)
        self.last, self.t_last = job.index, job.t_media
        if self.progress is not None:
            self.progress.update(1)

    def finish(self) -> None:
        """Close every output (after the run's last health events went through :meth:`event`)."""
        for closable in (self.writer, self.events_sink, self.frames_sink, self.progress):
            if closable is not None:
                closable.close()
