"""Road geometry over a stream: estimated over the first frames, re-estimated when the camera moves.

``GeometryTracker.update(frame)`` returns the geometry in use (or None before there is
one) and the ``geometry`` events of this frame:

* ``estimating``: the segments of one frame in ``estimate_stride`` (every frame until there
  is a geometry) are pooled and voted on (``vanishing.py``) after 1, 2, 4, 8... pooled
  frames; the first vote with
  enough support gives a provisional geometry (so lanes start at once), later ones refine
  it, and after ``estimate_frames`` pooled frames it is final.
  Confidence = the pooled inlier share x the share of single-frame VPs that agree with the
  pooled one (within ``agree_frac`` of the diagonal); the VP's row uncertainty is the robust
  spread (1.4826 MAD) of the single-frame rows, or the fit residual of a single frame.
* ``tracking``: one frame in ``recheck_every`` is voted on alone. When ``moved_checks`` of
  them in a row agree with each other and lie more than ``moved_frac`` of the diagonal from
  the VP in use, the camera has moved: estimation starts again (the old geometry stays in
  use until the new one has support).

A saved geometry (``--calibration camera.json``) starts in ``tracking``; presets do not
use a tracker at all.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .geometry import RoadGeometry
from .vanishing import VanishingOptions, VanishingPoint, VanishingPointEstimator


class GeometryOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    vanishing: VanishingOptions = Field(default_factory=VanishingOptions, description="segment detection, voting")
    estimate_frames: int = Field(20, ge=1, description="frames pooled before the estimate is final")
    estimate_stride: int = Field(3, ge=1, description="one frame in this many is pooled (20 x 3 frames: 2.4 s "
                                 "at 25 FPS, a third of the cost per frame)")
    min_inlier_share: float = Field(0.3, ge=0, le=1, description="pooled support a VP needs to be used")
    min_segments: int = Field(4, ge=2, description="fewest kept segments a vote may rest on")
    update_frac: float = Field(0.005, gt=0, description="a refined VP replaces the one in use when it moved "
                               "more than this fraction of the diagonal")
    agree_frac: float = Field(0.015, gt=0, description="single-frame VPs within this fraction of the diagonal agree")
    recheck_every: int = Field(25, ge=1, description="frames between camera-moved checks once estimated")
    moved_frac: float = Field(0.04, gt=0, description="VP further than this fraction of the diagonal: camera moved")
    moved_checks: int = Field(3, ge=1, description="checks in a row that must say so")
    camera_height_m: float = Field(1.2, gt=0, description="assumed camera height (both Udacity presets imply ~1.2 m)")
    camera_height_range_m: tuple[float, float] = Field((1.0, 1.8), description="heights a forward camera of a car "
                                                       "is mounted at: widens the lane-width check by what the "
                                                       "assumed height may be off by")
    hfov_deg: float = Field(60.0, gt=10, lt=170, description="assumed horizontal field of view without a lens "
                            "calibration")


class GeometryTracker:
    def __init__(self, options: GeometryOptions | None = None, lane_width_m: float = 3.7,
                 road_length_m: float = 30.0, focal_for: Callable[[tuple[int, int]], tuple] | None = None,
                 saved: RoadGeometry | None = None):
        self.options = options or GeometryOptions()
        self.estimator = VanishingPointEstimator(self.options.vanishing)
        self.lane_width_m, self.road_length_m = lane_width_m, road_length_m
        self.focal_for = focal_for or (lambda size: (None, None))    # size -> (focal px, principal point)
        self.geometry: RoadGeometry | None = saved
        self.state = "tracking" if saved is not None else "estimating"
        self.frames_seen = 0
        self._begin()

    def _begin(self) -> None:
        self._window = 0
        self._segments: list[np.ndarray] = []
        self._single: list[VanishingPoint] = []
        self._moved: deque[VanishingPoint] = deque(maxlen=self.options.moved_checks)
        self._announced = False

    def update(self, frame: np.ndarray) -> tuple[RoadGeometry | None, list[dict]]:
        size = (frame.shape[1], frame.shape[0])
        if self.geometry is not None and tuple(self.geometry.image_size) != size:
            self.geometry = self.geometry.scaled(size)
        self.frames_seen += 1
        events: list[dict] = []
        if self.frames_seen == 1 and self.geometry is not None:     # a saved geometry: say it is in use
            events.append(dict(self.geometry.to_event(), state="in use"))
        if self.state == "estimating":
            events = self._estimate(frame, size)
        elif (self.frames_seen - 1) % self.options.recheck_every == 0:
            events += self._recheck(frame, size)
        return self.geometry, events

    def _estimate(self, frame: np.ndarray, size: tuple[int, int]) -> list[dict]:
        o = self.options
        self._window += 1
        if (self._window - 1) % o.estimate_stride and self.geometry is not None:
            return []
        seg = self.estimator.segments(frame)
        self._segments.append(seg)
        one = self.estimator.vote(seg, size) if len(seg) >= o.min_segments else None
        if one is not None:
            self._single.append(one)
        events: list[dict] = []
        n = len(self._segments)
        final = n >= o.estimate_frames
        if not (final or n & (n - 1) == 0 or self.geometry is None):   # pooled votes at 1, 2, 4, 8... frames
            return events
        pool = np.concatenate(self._segments)
        pooled = self.estimator.vote(pool, size) if len(pool) >= o.min_segments else None
        if pooled is not None and pooled.inlier_share >= o.min_inlier_share:
            diag = float(np.hypot(*size))
            cand = self._geometry(pooled, size, diag)
            moved = self.geometry is None or np.hypot(cand.vanishing_point[0] - self.geometry.vanishing_point[0],
                                                      cand.vanishing_point[1] - self.geometry.vanishing_point[1]) \
                > o.update_frac * diag
            if moved or final or self.geometry.source != "estimated":
                self.geometry = cand
            if not self._announced:
                events.append(dict(cand.to_event(), state="provisional"))
                self._announced = True
        if final:
            if self.geometry is not None and self.geometry.source == "estimated":
                self.state = "tracking"
                events.append(dict(self.geometry.to_event(), state="final"))
            else:   # no support in the whole window: keep trying on a fresh one
                events.append({"event": "geometry", "source": "estimated", "state": "not found",
                               "reason": f"no converging road lines in {len(self._segments)} frames"})
            self._begin()
        return events

    def _geometry(self, pooled: VanishingPoint, size: tuple[int, int], diag: float) -> RoadGeometry:
        o = self.options
        rows = np.array([v.y for v in self._single]) if self._single else np.zeros(0)
        if len(rows) >= 3:
            sigma = float(1.4826 * np.median(np.abs(rows - np.median(rows))))
        else:
            sigma = pooled.residual_px
        agree = [np.hypot(v.x - pooled.x, v.y - pooled.y) <= o.agree_frac * diag for v in self._single]
        agree_share = float(np.mean(agree)) if agree else 0.0
        focal, principal = self.focal_for(size)
        return RoadGeometry.from_vp((pooled.x, pooled.y), size, focal, o.hfov_deg, principal,
                                    vp_sigma_px=max(sigma, 0.5), camera_height_m=o.camera_height_m,
                                    camera_height_range_m=o.camera_height_range_m,
                                    lane_width_m=self.lane_width_m, road_length_m=self.road_length_m,
                                    source="estimated", confidence=pooled.inlier_share * agree_share,
                                    frames_used=len(self._segments), inlier_share=pooled.inlier_share)

    def _recheck(self, frame: np.ndarray, size: tuple[int, int]) -> list[dict]:
        o = self.options
        seg = self.estimator.segments(frame)
        one = self.estimator.vote(seg, size) if len(seg) >= o.min_segments else None
        if one is None or one.inlier_share < o.min_inlier_share:
            return []
        diag = float(np.hypot(*size))
        vx, vy = self.geometry.vanishing_point
        if np.hypot(one.x - vx, one.y - vy) <= o.moved_frac * diag:
            self._moved.clear()
            return []
        self._moved.append(one)
        if len(self._moved) < o.moved_checks:
            return []
        xs, ys = np.array([v.x for v in self._moved]), np.array([v.y for v in self._moved])
        if np.hypot(xs - xs.mean(), ys - ys.mean()).max() > o.agree_frac * diag:
            return []
        self.state = "estimating"
        self._begin()
        return [{"event": "geometry", "source": self.geometry.source, "state": "re-estimating",
                 "reason": f"camera moved: VP seen at ({xs.mean():.0f}, {ys.mean():.0f}) px, "
                           f"{np.hypot(xs.mean() - vx, ys.mean() - vy):.0f} px from the one in use"}]
