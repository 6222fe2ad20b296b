"""Zone alerts: tracked objects of chosen classes inside a region of the frame.

A :class:`ZoneRule` names the classes of interest, a box in normalised frame coordinates
(``[x0, y0, x1, y1]``, 0..1), the minimum score, how many consecutive frames an object must
be inside (its bottom centre, where it touches the floor) before the alert fires, and the
alert's priority. :class:`ZoneMonitor` raises one :class:`Alert` per object and entry; the
object must leave the zone before it can alert again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sdk.detect import Detections

Priority = Literal["alarm", "warning", "info"]
PRIORITY_RANK = {"alarm": 0, "warning": 1, "info": 2}


class ZoneRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    classes: list[str] = Field(min_length=1, description="labels of interest (names from the bundle's labels)")
    box: tuple[float, float, float, float] = Field((0.0, 0.0, 1.0, 1.0), description="x0 y0 x1 y1, 0..1")
    min_score: float = Field(0.3, ge=0, le=1)
    min_frames: int = Field(2, ge=1, description="consecutive frames inside before alerting")
    priority: Priority = "warning"

    @field_validator("box")
    @classmethod
    def _box(cls, b):
        if not (0 <= b[0] < b[2] <= 1 and 0 <= b[1] < b[3] <= 1):
            raise ValueError("box must be [x0, y0, x1, y1] with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, "
                             f"got {list(b)}")
        return b


def track_ids(dets: Detections) -> np.ndarray:
    """Track ids, -1 for boxes the tracker has not confirmed (all of them before it ran)."""
    return dets.tracker_id if dets.tracker_id is not None else np.full(len(dets), -1, np.int64)


@dataclass(frozen=True)
class Alert:
    frame: int
    t: float
    zone: str
    priority: Priority
    label: str
    track_id: int
    score: float
    xyxy: tuple[float, float, float, float]

    def to_record(self) -> dict:
        return {"frame": self.frame, "t": round(self.t, 3), "zone": self.zone, "priority": self.priority,
                "label": self.label, "track_id": self.track_id, "score": round(self.score, 4),
                "xyxy": [round(v, 1) for v in self.xyxy]}


class ZoneMonitor:
    """``update(frame, t, tracks, (h, w)) -> [Alert]`` for every rule, in priority order."""

    def __init__(self, rules: list[ZoneRule], labels: list[str]):
        unknown = sorted({c for r in rules for c in r.classes} - set(labels))
        if unknown:
            raise ValueError(f"zone classes {unknown} are not among the model's labels {labels}")
        self.rules, self.labels = list(rules), list(labels)
        self._inside: dict[tuple[str, int], int] = {}

    def update(self, frame: int, t: float, tracks: Detections, hw: tuple[int, int]) -> list[Alert]:
        h, w = hw
        pts = tracks.bottom_centers / np.array([w, h], np.float32) if len(tracks) else np.zeros((0, 2))
        alerts, seen = [], set()
        ids = track_ids(tracks)
        for rule in self.rules:
            want = {self.labels.index(c) for c in rule.classes}
            x0, y0, x1, y1 = rule.box
            for i in range(len(tracks)):
                tid = int(ids[i])
                if (tid < 0 or int(tracks.class_id[i]) not in want or tracks.confidence[i] < rule.min_score
                        or not (x0 <= pts[i, 0] <= x1 and y0 <= pts[i, 1] <= y1)):
                    continue
                key = (rule.name, tid)
                seen.add(key)
                n = self._inside.get(key, 0) + 1
                self._inside[key] = n
                if n == rule.min_frames:
                    alerts.append(Alert(frame, t, rule.name, rule.priority, self.labels[int(tracks.class_id[i])],
                                        tid, float(tracks.confidence[i]), tuple(float(v) for v in tracks.xyxy[i])))
        self._inside = {k: v for k, v in self._inside.items() if k in seen}   # left the zone: re-armed
        return sorted(alerts, key=lambda a: PRIORITY_RANK[a.priority])
