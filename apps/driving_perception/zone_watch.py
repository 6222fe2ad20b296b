"""Detector -> tracker -> zone alerts on every frame of a source, written as JSON lines.

``ZoneWatch(bundle, rules)`` loads a detection bundle (hashes verified; its
``extra["detector"]`` picks the adapter, its ``labels`` name the classes), tracks with
ByteTrack and checks the :mod:`zones` rules. ``run(source, out)`` reads an image folder, a
video file or a camera (:func:`sources.open_source`) and writes one line per frame
(detections with label names and track ids, and the alerts raised on it).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sdk.closing import Closing
from sdk.detect import Detections

from .sources import frame_fields, open_source
from .track import ByteTrack, TrackerOptions
from .zones import Alert, ZoneMonitor, ZoneRule, track_ids


@dataclass
class WatchSummary:
    frames: int = 0
    detections: int = 0
    alerts: dict[str, int] = field(default_factory=dict)


class ZoneWatch(Closing):
    def __init__(self, bundle: str | Path, rules: list[ZoneRule], tracker: TrackerOptions | None = None,
                 **detector_overrides):
        from sdk.bundle import load_bundle

        from .detect.detector import Detector

        self.bundle = load_bundle(bundle)
        self.labels = list(self.bundle.manifest.labels or [])
        if not self.labels:
            raise ValueError(f"bundle {bundle} has no labels; a zone watch needs class names")
        self.detector = Detector.from_bundle(self.bundle, **detector_overrides)
        self.tracker = ByteTrack(tracker)
        self.monitor = ZoneMonitor(rules, self.labels)

    def records(self, dets: Detections) -> list[dict]:
        return [{"label": self.labels[int(c)] if 0 <= int(c) < len(self.labels) else f"class{int(c)}",
                 "score": round(float(s), 4), "xyxy": [round(float(v), 1) for v in b],
                 "track_id": int(t) if t >= 0 else None}
                for b, s, c, t in zip(dets.xyxy, dets.confidence, dets.class_id, track_ids(dets), strict=True)]

    def process(self, frame: int, t: float, image: np.ndarray) -> tuple[Detections, list[Alert]]:
        tracks = self.tracker.update(self.detector(image))
        return tracks, self.monitor.update(frame, t, tracks, image.shape[:2])

    def run(self, source: str | Path, out: str | Path, fps: float = 10.0,
            max_frames: int | None = None) -> WatchSummary:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        summary = WatchSummary()
        with out.open("w") as f:
            for n, item in enumerate(open_source(source)):
                if max_frames is not None and n >= max_frames:
                    break
                index, image, t = frame_fields(item, n, fps)
                tracks, alerts = self.process(index, t, image)
                f.write(json.dumps({"frame": index, "t": round(t, 3), "detections": self.records(tracks),
                                    "alerts": [a.to_record() for a in alerts]}) + "\n")
                summary.frames += 1
                summary.detections += len(tracks)
                for a in alerts:
                    summary.alerts[a.priority] = summary.alerts.get(a.priority, 0) + 1
        return summary

    def close(self) -> None:
        self.detector.close()
