"""DrivePipeline: frames -> detections -> tracks -> lanes -> warnings -> health -> outputs.

Two running modes, fixed when the pipeline is built:

* ``offline``: every frame is processed, as fast as the machine goes. The health
  monitor runs on the video's own timeline (frame index / FPS), so a slow machine is not
  "degraded" for reading a file slowly -- but a model over its latency budget still is.
* ``live``: a real-time clock. Frames come at their capture rate (a file is paced by its
  timestamps, as a camera would deliver it); a frame that is already stale when the
  previous one is done is dropped and counted, and the monitor uses the wall clock.

Outputs of :meth:`DrivePipeline.run` in ``out_dir``: ``annotated.mp4`` (boxes, IDs, lanes,
warnings, FPS, health banner), ``events.jsonl`` (warnings and health changes, with frame
index and timestamp), ``frames.jsonl`` (per-frame tracks, lanes, health) and
``latency.json`` (per-stage latency summary, FPS, processed / dropped counts).
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sdk import logger
from sdk.detect import Detections
from sdk.errors import InferenceError
from sdk.runtime import LatencyRecorder

from .annotate import Annotator
from .detect.detector import Detector
from .health import HealthMonitor, HealthOptions, HealthState
from .lanes.calibration import CameraCalibration
from .lanes.detector import LaneDetector, LaneOptions, LaneResult
from .lanes.geometry import CameraFile, RoadGeometry
from .stages import DriveSinks, FrameJob, decoded_frames, live_frames
from .track.bytetrack import ByteTrack, TrackerOptions
from .warnings import WarningEngine, WarningOptions, WarningState

STAGES = ("decode", "queue", "pre", "model", "post", "track", "geometry", "lanes", "warn", "annotate", "encode")


class DriveOptions(BaseModel):
    """Everything but the model; ``mode`` is checked here, not halfway through a stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["offline", "live"] = Field("offline", description="offline: every frame; live: real-time clock")
    tracker: TrackerOptions = Field(default_factory=TrackerOptions, description="ByteTrack settings")
    lanes: LaneOptions | None = Field(default_factory=LaneOptions, description="lane finding; None turns it off")
    warnings: WarningOptions = Field(default_factory=WarningOptions, description="FCW / LDW settings")
    health: HealthOptions | None = Field(None, description="health monitor settings; None: by mode (offline runs "
                                         "on the file's timeline and does not apply the model latency budget)")
    annotate: bool = Field(True, description="draw and write the annotated video")
    fps_hint: float = Field(25.0, gt=0, description="frame rate assumed when the source does not say")
    parallel_encode: bool = Field(True, description="encode the annotated video on a writer thread")
    parallel_lanes: bool = Field(True, description="find lanes on a second thread while the detector runs "
                                 "(onnxruntime and OpenCV release the GIL)")


@dataclass
class FrameResult:
    index: int
    t: float
    tracks: Detections
    lanes: LaneResult | None
    warnings: WarningState | None
    health: str
    health_reasons: list[str]
    available: bool
    fps: float | None = None
    events: list[dict] = field(default_factory=list)

    def to_record(self) -> dict:
        rec: dict[str, Any] = {"frame": self.index, "t": round(self.t, 4), "health": self.health,
                               "perception": "available" if self.available else "perception unavailable"}
        if self.available:
            rec["tracks"] = self.tracks.to_records()
            rec["lanes"] = self.lanes.to_record() if self.lanes is not None else None
            if self.warnings is not None:
                rec["lead_track_id"] = self.warnings.lead_track_id
                rec["lead_from"] = self.warnings.lead_from
                rec["ldw_available"] = self.warnings.ldw_available
                rec["ttc_s"] = None if self.warnings.ttc_s is None else round(self.warnings.ttc_s, 3)
                rec["fcw"], rec["ldw"] = self.warnings.fcw, self.warnings.ldw
        else:
            rec["reasons"] = self.health_reasons
        return rec


@dataclass
class RunSummary:
    out_dir: Path
    processed: int
    dropped: int
    wall_s: float
    fps: float
    stages: dict[str, dict]
    health_final: str
    events: int
    files: dict[str, str]
    health_reasons: list[str] = field(default_factory=list)
    geometry: dict | None = None          # the road geometry in use at the end (its event record)
    lanes_found: int = 0                  # frames with lanes 'ok'
    source_error: str | None = None       # why the source stopped, if it failed
    camera_source: bool = False           # a camera / stream (its failures are 'unavailable')

    def to_dict(self) -> dict:
        return {"processed": self.processed, "dropped": self.dropped, "wall_s": round(self.wall_s, 3),
                "fps": round(self.fps, 2), "stages_ms": self.stages, "health_final": self.health_final,
                "health_reasons": self.health_reasons, "events": self.events, "files": self.files,
                "geometry": self.geometry, "lanes_found": self.lanes_found, "source_error": self.source_error}


class DrivePipeline:
    """Stateful per-stream pipeline; build one per stream (``with`` closes the detector).

    ``detector=None`` runs lanes, health and outputs without object detection (a machine
    with no model yet)."""

    def __init__(self, detector: Detector | None, options: DriveOptions | None = None,
                 calibration: CameraCalibration | None = None, clock: Callable[[], float] = time.monotonic,
                 geometry: RoadGeometry | None = None):
        self.options = options or DriveOptions()
        self.detector = detector
        self.calibration = calibration
        self.tracker = ByteTrack(self.options.tracker)
        self.lanes = (LaneDetector(self.options.lanes, calibration, geometry)
                      if self.options.lanes is not None else None)
        self._lane_state: str | None = None
        self.lanes_found = 0
        self.warnings = WarningEngine(self.options.warnings)
        self.clock = clock
        health = self.options.health
        if health is None:
            health = HealthOptions() if self.options.mode == "live" else HealthOptions(model_budget_ms=None)
        self.health = HealthMonitor(health, clock=clock)
        self.annotator = Annotator(copy=False)
        self.recorders = {s: LatencyRecorder() for s in STAGES}
        self._fps_times: list[float] = []
        self._seen_transitions = 0
        self._pool = None
        if self.lanes is not None and self.options.parallel_lanes:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drive-lanes")

    # -- the stages, one frame each ------------------------------------------------------
    def _time(self, stage: str, seconds: float) -> None:
        self.recorders[stage].record_ms(seconds * 1e3)

    def stages(self) -> list:
        """detect -> track -> lanes -> warnings -> annotate, as ``sdk.pipeline.Stage`` objects."""
        from sdk.pipeline import Stage

        return [Stage("detect", self._detect), Stage("track", self._track), Stage("lanes", self._lanes_stage),
                Stage("warnings", self._warnings), Stage("annotate", self._annotate)]

    def process(self, image: np.ndarray, t: float, index: int) -> FrameResult:
        """Run every stage on one frame captured at ``t`` (seconds on the monitor's clock)."""
        job = FrameJob(index, image, t, time.monotonic(), t=t)
        for stage in self.stages()[:-1]:
            job = stage.fn(job)
        return job.result

    def _detect(self, job: FrameJob) -> FrameJob:
        if self.options.mode == "live":
            job.t = job.t or self.clock()
            self._time("queue", max(0.0, time.monotonic() - job.t_capture))
        else:
            job.t = job.t or job.t_media
        job.started = time.perf_counter()
        image = job.image
        job.lanes_job = self._pool.submit(self._find_lanes, image) if self._pool is not None else None
        if self.detector is not None:
            try:
                job.dets = self.detector(image)
            except InferenceError as exc:
                logger.warning("frame %d: %s", job.index, exc)
                job.dets, job.valid = Detections.empty(), False
            for k in ("pre", "model", "post"):
                self._time(k, self.detector.timings[k])
            job.model_s = self.detector.timings["model"]
        else:
            job.dets = Detections.empty()
        return job

    def _track(self, job: FrameJob) -> FrameJob:
        t0 = time.perf_counter()
        job.tracks = self.tracker.update(job.dets) if job.valid else Detections.empty()
        self._time("track", time.perf_counter() - t0)
        return job

    def _lanes_stage(self, job: FrameJob) -> FrameJob:
        if job.lanes_job is not None:
            job.lanes, job.lanes_job = job.lanes_job.result(), None
        elif self.lanes is not None:
            job.lanes = self._find_lanes(job.image)
        return job

    def _warnings(self, job: FrameJob) -> FrameJob:
        """Health (every input of this frame, in order), lane events, then FCW / LDW."""
        t2 = time.perf_counter()
        index, t, lanes, tracks = job.index, job.t, job.lanes, job.tracks
        self.health.frame_arrived(job.image, t=t)
        if job.model_s is not None:
            self.health.model_result(job.model_s, job.valid)
        lane_events = self._lane_events(lanes, index, t) if lanes is not None else []
        if lanes is not None:
            self.health.lanes_seen(lanes.available, t)
            self.lanes_found += lanes.state == "ok"
        state = self.health.check(t)
        available = self.health.available
        events = lane_events + [dict(e, frame=index) for e in self.health.transitions[self._seen_transitions:]]
        self._seen_transitions = len(self.health.transitions)
        if available:
            wst = self.warnings.update(index, t, tracks, job.image.shape[1], lanes)
            events += wst.events
        else:  # never present stale tracks or warnings as current
            self.warnings.reset()
            wst, tracks, lanes = None, Detections.empty(), None
        self._time("warn", time.perf_counter() - t2)
        self._fps_times.append(time.perf_counter())
        self._fps_times = self._fps_times[-30:]
        span = self._fps_times[-1] - self._fps_times[0]
        fps = (len(self._fps_times) - 1) / span if span > 0 else None
        job.result = FrameResult(index, t, tracks, lanes, wst, state.value, list(self.health.reasons), available,
                                 fps, events)
        return job

    def _annotate(self, job: FrameJob) -> FrameJob:
        if self.options.annotate:
            job.frame = self.annotate(job.image, job.result)
        return job

    def _lane_events(self, lanes: LaneResult, index: int, t: float) -> list[dict]:
        """Geometry events of this frame, and a ``lanes`` event when they are found or lost."""
        events = [dict(e, frame=index, t=round(t, 4)) for e in lanes.events]
        found = "found" if lanes.available else "lost"
        if found != self._lane_state and not (self._lane_state is None and found == "found"):
            events.append({"event": "lanes", "frame": index, "t": round(t, 4), "state": found,
                           "reason": lanes.reason if found == "lost" else ""})
        self._lane_state = found
        return events

    def _find_lanes(self, image: np.ndarray) -> LaneResult:
        t0 = time.perf_counter()
        lanes = self.lanes(image)
        self._time("lanes", time.perf_counter() - t0)              # geometry included
        if self.lanes.tracker is not None:
            self._time("geometry", self.lanes.geometry_s)
        return lanes

    def annotate(self, image: np.ndarray, result: FrameResult) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.annotator(image, result)
        self._time("annotate", time.perf_counter() - t0)
        return out

    def stage_summary(self) -> dict[str, dict]:
        out = {}
        for name, rec in self.recorders.items():
            if rec.count:
                st = rec.stats()
                out[name] = {"mean_ms": round(st.mean_ms, 3), "p50_ms": round(st.p50_ms, 3),
                             "p90_ms": round(st.p90_ms, 3), "p99_ms": round(st.p99_ms, 3), "count": st.count}
        return out

    # -- a whole stream ----------------------------------------------------------------------
    def run(self, source: Iterable, out_dir: str | Path, max_frames: int | None = None,
            fps: float | None = None, progress: bool = False) -> RunSummary:
        """Process a source (an iterable of frames) and write the outputs into ``out_dir``.

        Both modes run ``sdk.pipeline.StreamingPipeline``: decode (the source) -> detect ->
        track -> lanes -> warnings -> annotate -> sinks, one worker per stage. Offline: every
        frame, in order (blocking queues). Live: a one-frame queue in front of the detector
        that drops the oldest frame, so it always works on the freshest one (each drop is
        told to the health monitor); a ``VideoSource`` is switched to ``realtime`` pacing (as
        a camera would deliver it), and a watchdog keeps checking health while no frame comes.
        """
        from sdk.pipeline import StreamingPipeline

        from .sources import is_camera, source_problems

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        fps = fps or getattr(source, "fps", None) or self.options.fps_hint
        live = self.options.mode == "live"
        if live and self.health.options.deadline_s is None:  # per-frame deadline: one frame period
            self.health.options = self.health.options.model_copy(update={"deadline_s": 1.0 / fps})
        paths = {"video": out / "annotated.mp4", "events": out / "events.jsonl", "frames": out / "frames.jsonl"}
        source_errors: list[str] = []
        sinks = DriveSinks(paths, fps, self.recorders["encode"], self.options.parallel_encode,
                           self.options.annotate, self.health, _progress(progress, max_frames))
        stop_watchdog = threading.Event()
        t_start = time.perf_counter()
        try:
            if live:
                if hasattr(source, "realtime"):
                    source.realtime = True
                items = live_frames(itertools.islice(source, max_frames) if max_frames else source, fps)

                def watchdog():  # no frame for a while must still turn the monitor FAILED
                    while not stop_watchdog.wait(self.health.options.frame_timeout_s / 4):
                        self.health.check()

                threading.Thread(target=watchdog, name="drive-health-watchdog", daemon=True).start()
            else:
                items = decoded_frames(source, fps, max_frames, source_errors,
                                       lambda s: self._time("decode", s))

            def on_event(ev) -> None:   # live: the monitor counts the frames the first queue dropped
                if ev.kind == "drop" and ev.stage == "detect":
                    self.health.frame_dropped(1)

            stats = StreamingPipeline(items, self.stages(), sinks, queue_size=1 if live else 2,
                                      drop="oldest" if live else "block", on_error="raise",
                                      close_sink=False, on_event=on_event).run()
            dropped = stats.dropped
            if stats.source_error:
                source_errors.append(stats.source_error)
            stop_watchdog.set()
            for level, reason in source_problems(source, source_errors, stats.processed + dropped, max_frames):
                self.health.source_problem(HealthState(level), reason)
            self.health.check(self.clock() if live else sinks.t_last)
            for ev in self.health.transitions[self._seen_transitions:]:  # changes after the last frame
                sinks.event(dict(ev, frame=sinks.last))
            self._seen_transitions = len(self.health.transitions)
        finally:
            stop_watchdog.set()
            sinks.finish()
        wall = time.perf_counter() - t_start
        files = {"events": str(paths["events"]), "frames": str(paths["frames"]), "latency": str(out / "latency.json")}
        if sinks.writer is not None:
            files["video"] = str(paths["video"])
        geometry = self.lanes.road_geometry(self.lanes.frame_size) if self.lanes is not None and \
            self.lanes.frame_size is not None else None
        if geometry is not None and geometry.source == "estimated":   # for `--calibration` next time
            CameraFile(lens=self.calibration, road=geometry).save(out / "camera.json")
            files["camera"] = str(out / "camera.json")
        n = stats.processed
        summary = RunSummary(out, n, dropped, wall, n / wall if wall > 0 else 0.0, self.stage_summary(),
                             self.health.state.value, sinks.events, files, list(self.health.reasons),
                             None if geometry is None else geometry.to_event(), self.lanes_found,
                             "; ".join(source_errors) or None, is_camera(source))
        (out / "latency.json").write_text(json.dumps({"mode": self.options.mode, **summary.to_dict()}, indent=2))
        return summary

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self.detector is not None:
            self.detector.close()

    def __enter__(self) -> "DrivePipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _progress(enabled: bool, total: int | None):
    import sys

    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="drive")
