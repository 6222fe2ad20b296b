"""Forward-collision and lane-departure warnings, as JSON-friendly events.

Time to collision (TTC) of the lead vehicle comes from how fast its box grows: for a box
of scale ``s`` (sqrt of its area) seen at ``t-1`` and ``t``, ``TTC = dt / (s_t/s_{t-1} - 1)``
(constant closing speed, pinhole camera). The growth rate ``(s_t/s_{t-1} - 1)/dt`` is
smoothed with an EMA before inverting, since one noisy box would otherwise fire a warning.

* Lead vehicle: the nearest (lowest box bottom) tracked vehicle whose bottom centre lies
  in the ego lane while the lanes are tracked (``ok`` or ``coasting``); otherwise in the ego
  corridor of the road geometry (one lane width, on the lines through the vanishing point),
  or, with no geometry either, in a central band of the frame. ``lead_from`` says which,
  and a ``lane_features`` event marks each change.
* FCW: smoothed TTC below ``ttc_threshold_s`` for ``fcw_min_frames`` frames in a row.
* LDW: |lane offset| above ``ldw_offset_m`` for ``ldw_min_frames`` frames while the lanes
  are tracked (a lost lane never raises LDW; there is no turn-signal input here).
Each warning is an event on its rising edge, then again only after it has cleared.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sdk.detect import Detections

from .detections import VEHICLE_CLASSES


def _tracked(tracks: Detections) -> np.ndarray:
    """(N,) rows a tracker has given an id (none when nothing tracked them)."""
    return tracks.tracker_id >= 0 if tracks.tracker_id is not None else np.zeros(len(tracks), bool)


class WarningOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    ttc_threshold_s: float = Field(2.5, gt=0, description="FCW when the smoothed TTC is below this")
    fcw_min_frames: int = Field(2, ge=1, description="frames in a row under the threshold before FCW")
    ttc_smoothing: float = Field(0.4, gt=0, le=1, description="EMA weight of the newest growth rate")
    min_growth_frames: int = Field(3, ge=1, description="frames of one lead track before its TTC counts")
    ldw_offset_m: float = Field(0.6, gt=0, description="LDW when |offset from lane centre| exceeds this")
    ldw_min_frames: int = Field(3, ge=1, description="frames in a row over the threshold before LDW")
    corridor: tuple[float, float] = Field((0.35, 0.65), description="ego corridor (fractions of width) with no lanes")


@dataclass
class WarningState:
    """What this frame's warnings are; ``events`` are the new ones (rising edges)."""

    lead_track_id: int | None = None
    lead_from: str = "lanes"          # lanes | vp corridor | frame corridor
    ldw_available: bool = True        # False while the lanes are not tracked
    ttc_s: float | None = None
    fcw: bool = False
    ldw: bool = False
    events: list[dict] = field(default_factory=list)


class WarningEngine:
    def __init__(self, options: WarningOptions | None = None):
        self.options = options or WarningOptions()
        self.reset()

    def reset(self) -> None:
        self._lead: int | None = None
        self._prev_scale: float | None = None
        self._prev_t: float | None = None
        self._rate: float | None = None
        self._lead_frames = 0
        self._fcw_count = self._ldw_count = 0
        self.fcw_active = self.ldw_active = False
        self.lead_from: str | None = None

    def select_lead(self, tracks: Detections, frame_w: int, lanes=None) -> int | None:
        """Row index of the lead vehicle among ``tracks``, or None."""
        if len(tracks) == 0:
            return None
        vehicles = np.isin(tracks.class_id, list(VEHICLE_CLASSES)) & _tracked(tracks)
        feet = tracks.bottom_centers
        source = self.corridor_source(lanes)
        if source == "lanes":
            inside = lanes.in_ego_lane(feet)
        elif source == "vp corridor":
            inside = lanes.geometry.in_corridor(feet)
        else:
            lo, hi = self.options.corridor
            inside = (feet[:, 0] >= lo * frame_w) & (feet[:, 0] <= hi * frame_w)
        cand = np.flatnonzero(vehicles & inside)
        if len(cand) == 0:
            return None
        return int(cand[np.argmax(feet[cand, 1])])

    @staticmethod
    def corridor_source(lanes) -> str:
        if lanes is not None and getattr(lanes, "available", False):
            return "lanes"
        if lanes is not None and getattr(lanes, "geometry", None) is not None:
            return "vp corridor"
        return "frame corridor"

    def _ttc(self, tracks: Detections, row: int | None, t: float) -> float | None:
        if row is None:
            self._lead, self._prev_scale, self._rate, self._lead_frames = None, None, None, 0
            return None
        tid = int(tracks.tracker_id[row])
        scale = float(np.sqrt(max(tracks.area[row], 1e-6)))
        if tid != self._lead or self._prev_scale is None:
            self._lead, self._prev_scale, self._prev_t, self._rate, self._lead_frames = tid, scale, t, None, 1
            return None
        dt = t - self._prev_t
        if dt <= 0:
            return self._inverse()
        rate = (scale / self._prev_scale - 1.0) / dt  # 1/TTC
        a = self.options.ttc_smoothing
        self._rate = rate if self._rate is None else a * rate + (1 - a) * self._rate
        self._prev_scale, self._prev_t = scale, t
        self._lead_frames += 1
        return self._inverse()

    def _inverse(self) -> float | None:
        if self._rate is None or self._lead_frames < self.options.min_growth_frames:
            return None
        return float(1.0 / self._rate) if self._rate > 1e-6 else float("inf")

    def update(self, frame_index: int, t: float, tracks: Detections, frame_w: int, lanes=None) -> WarningState:
        """Feed one frame's confirmed tracks (and lanes); returns warnings and new events."""
        o = self.options
        row = self.select_lead(tracks, frame_w, lanes)
        ttc = self._ttc(tracks, row, t)
        source = self.corridor_source(lanes)
        st = WarningState(lead_track_id=self._lead if row is not None else None, lead_from=source,
                          ldw_available=source == "lanes",
                          ttc_s=None if ttc is None or not np.isfinite(ttc) else ttc)
        if lanes is not None and source != self.lead_from and not (self.lead_from is None and source == "lanes"):
            st.events.append({"event": "lane_features", "frame": frame_index, "t": round(t, 4),
                              "lead_from": source, "ldw": "on" if source == "lanes" else "off",
                              "reason": "" if source == "lanes" else (getattr(lanes, "reason", "") or "no lanes")})
        self.lead_from = source
        closing = st.ttc_s is not None and st.ttc_s < o.ttc_threshold_s
        self._fcw_count = self._fcw_count + 1 if closing else 0
        fcw = self._fcw_count >= o.fcw_min_frames
        if fcw and not self.fcw_active:
            st.events.append({"event": "FCW", "frame": frame_index, "t": round(t, 4),
                              "ttc_s": round(st.ttc_s, 3), "track_id": st.lead_track_id})
        self.fcw_active = st.fcw = fcw

        offset = getattr(lanes, "offset_m", None) if lanes is not None and getattr(lanes, "available", False) else None
        departing = offset is not None and abs(offset) > o.ldw_offset_m
        self._ldw_count = self._ldw_count + 1 if departing else 0
        ldw = self._ldw_count >= o.ldw_min_frames
        if ldw and not self.ldw_active:
            st.events.append({"event": "LDW", "frame": frame_index, "t": round(t, 4),
                              "offset_m": round(float(offset), 3), "side": "right" if offset > 0 else "left"})
        self.ldw_active = st.ldw = ldw
        return st
