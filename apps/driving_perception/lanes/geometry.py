"""Road geometry of a camera: vanishing point, horizon, bird's-eye transform, ego corridor.

A flat road seen by a pinhole camera with no roll: the road direction's vanishing point
(VP) ``(vx, vy)`` gives the horizon row ``vy`` and the pitch ``atan((cy - vy) / f)``; a
ground point ``Z`` metres ahead lies on row ``y ~ vy + f H / Z`` and ``X`` metres to the
side spans ``~ X (y - vy) / H`` pixels on that row (``f`` focal length in pixels, ``H``
camera height; the code uses the exact pinhole relations with the pitch). So, with the VP
alone:

* the road trapezoid is bounded by two lines through the VP, ``lane_width_m`` apart on
  the ground (``(W/2)(y - vy)/H`` pixels either side of ``vx`` on row ``y``), from the
  bottom row up to the row ``road_length_m`` further ahead -- the only place ``f`` enters,
  from the lens calibration when there is one, else from an assumed field of view;
* lines parallel on the ground are vertical in the bird's-eye view whatever ``f`` and
  ``H`` are: the parallelism check depends on the VP only, so its tolerance is widened by
  what the VP's own uncertainty does to the far end of the lane (plus one source pixel
  there on each line);
* with no lanes the ego corridor is the same trapezoid: a box's foot point is in it when
  ``|x - vx| <= (W/2)(y - vy)/H``.

The default camera height, 1.2 m, is what both Udacity presets imply (their trapezoids
give 1.23 m and 1.18 m for a 3.7 m lane); the default 60 degree horizontal field of view
is the calibrated Udacity camera's (58 degrees). A wrong height scales lateral metres
(offset, lane width) by ``H_true / H``; a wrong ``f`` scales the longitudinal ones.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .calibration import CameraCalibration

GeometrySource = Literal["estimated", "saved", "preset"]


class RoadGeometry(BaseModel):
    """Where the road is in the image; written into ``camera.json`` and read back by ``--calibration``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    image_size: tuple[int, int] = Field(description="(width, height) of the (undistorted) frames measured")
    vanishing_point: tuple[float, float] = Field(description="road VP (x, y) in pixels; y is the horizon row")
    vp_sigma_px: float = Field(description="uncertainty of the VP row (robust spread over frames, or the fit "
                                           "residual for a single frame)")
    focal_px: float = Field(description="focal length in pixels at image_size")
    focal_from: str = Field(description="'calibration' or 'assumed N deg horizontal field of view'")
    principal_point: tuple[float, float] | None = Field(None, description="(cx, cy) in pixels; None: the centre")
    camera_height_m: float = Field(1.2, gt=0, description="camera height above the road (assumed)")
    camera_height_range_m: tuple[float, float] | None = Field(None, description="heights the camera may really "
                                                              "be at when camera_height_m is assumed (None: known)")
    lane_width_m: float = Field(3.7, gt=0, description="lane width the trapezoid spans on the ground")
    road_length_m: float = Field(30.0, gt=0, description="metres of road the bird's-eye view covers")
    source: GeometrySource = Field("estimated", description="estimated (this run), saved (a file), preset")
    confidence: float | None = Field(None, ge=0, le=1, description="inlier share x share of frames agreeing")
    frames_used: int = Field(0, ge=0, description="frames the estimate rests on")
    inlier_share: float | None = Field(None, description="share of the segment length pointing at the VP")

    @classmethod
    def from_vp(cls, vp: tuple[float, float], size: tuple[int, int], focal_px: float | None = None,
                hfov_deg: float = 60.0, principal_point: tuple[float, float] | None = None,
                **fields) -> "RoadGeometry":
        if focal_px is None:
            focal_px, focal_from = size[0] / 2 / math.tan(math.radians(hfov_deg) / 2), \
                f"assumed {hfov_deg:g} deg horizontal field of view"
        else:
            focal_from = "calibration"
        fields.setdefault("vp_sigma_px", 0.0)
        return cls(image_size=size, vanishing_point=vp, focal_px=focal_px, focal_from=focal_from,
                   principal_point=principal_point, **fields)

    @classmethod
    def from_quad(cls, quad, size: tuple[int, int], lane_width_m: float = 3.7,
                  road_length_m: float = 30.0) -> "RoadGeometry":
        """The geometry a preset trapezoid (TL, BL, BR, TR fractions) implies."""
        w, h = size
        (tlx, tly), (blx, bly), (brx, bry), (trx, try_) = [(x * w, y * h) for x, y in quad]
        l1, l2 = np.cross([tlx, tly, 1], [blx, bly, 1]), np.cross([trx, try_, 1], [brx, bry, 1])
        v = np.cross(l1, l2)
        vx, vy = v[0] / v[2], v[1] / v[2]
        height = lane_width_m * (bly - vy) / (brx - blx)
        z_bot, z_top_rows = (bly - vy), (tly - vy)
        focal = road_length_m / (height * (1 / z_top_rows - 1 / z_bot))
        return cls(image_size=size, vanishing_point=(float(vx), float(vy)), vp_sigma_px=0.0, focal_px=float(focal),
                   focal_from="preset", camera_height_m=float(height), lane_width_m=lane_width_m,
                   road_length_m=road_length_m, source="preset")

    # -- derived ---------------------------------------------------------------------------
    def scaled(self, size: tuple[int, int]) -> "RoadGeometry":
        """The same geometry for frames of another size (pixels scale with the frame)."""
        if tuple(size) == tuple(self.image_size):
            return self
        sx, sy = size[0] / self.image_size[0], size[1] / self.image_size[1]
        vx, vy = self.vanishing_point
        pp = None if self.principal_point is None else (self.principal_point[0] * sx, self.principal_point[1] * sy)
        return self.model_copy(update={"image_size": tuple(size), "vanishing_point": (vx * sx, vy * sy),
                                       "vp_sigma_px": self.vp_sigma_px * sy, "focal_px": self.focal_px * sx,
                                       "principal_point": pp})

    def _pitch(self) -> tuple[float, float]:
        """(pitch down in radians, principal row cy): the horizon is f tan(pitch) above cy."""
        cy = self.principal_point[1] if self.principal_point is not None else self.image_size[1] / 2.0
        return math.atan2(cy - self.vanishing_point[1], self.focal_px), cy

    def distance_m(self, y: np.ndarray | float) -> np.ndarray | float:
        """Ground distance ahead of the camera seen on row(s) ``y`` (inf at and above the horizon)."""
        theta, cy = self._pitch()
        below = theta + np.arctan((np.asarray(y, np.float64) - cy) / self.focal_px)   # ray angle under level
        with np.errstate(divide="ignore"):
            return np.where(below > 0, self.camera_height_m / np.tan(np.maximum(below, 1e-12)), np.inf)

    def row_m(self, z: float) -> float:
        """Row of the ground ``z`` metres ahead."""
        theta, cy = self._pitch()
        return float(cy + self.focal_px * math.tan(math.atan2(self.camera_height_m, z) - theta))

    def rows(self) -> tuple[float, float]:
        """(top, bottom) rows of the road trapezoid in pixels: the bottom row and ``road_length_m`` beyond it."""
        h = self.image_size[1]
        vy = self.vanishing_point[1]
        y_bot = float(h)
        y_top = self.row_m(float(self.distance_m(y_bot)) + self.road_length_m)
        return max(y_top, vy + 0.02 * h), y_bot   # at least 2% of the frame below the horizon

    def half_width_px(self, y: np.ndarray | float) -> np.ndarray | float:
        """Half a lane width in pixels on row(s) ``y``: f (W/2) / depth along the optical axis."""
        theta, _ = self._pitch()
        z = self.distance_m(y)
        with np.errstate(invalid="ignore"):
            depth = self.camera_height_m * math.sin(theta) + z * math.cos(theta)
            half = np.where(np.isfinite(z), self.focal_px * self.lane_width_m / 2 / depth, 0.0)
        return half if np.ndim(y) else float(half)

    def camera_x_px(self, y: float) -> float:
        """Column, on row ``y``, of the ground line straight ahead of the camera (lateral position 0).

        That line joins the VP and the image of the vertical, which lies on the principal
        point's column (yaw and pitch keep it there): x = vx + (y - vy)(cx - vx)(cy - vy) /
        ((cy - vy)^2 + f^2). With the VP off the centre column (a camera turned on its mount,
        or a car not parallel to its lane), it is the VP column, not the frame centre, that is
        straight ahead."""
        w, h = self.image_size
        cx, cy = self.principal_point if self.principal_point is not None else (w / 2.0, h / 2.0)
        vx, vy = self.vanishing_point
        return float(vx + (y - vy) * (cx - vx) * (cy - vy) / ((cy - vy) ** 2 + self.focal_px ** 2))

    def quad(self) -> tuple:
        """Road trapezoid TL, BL, BR, TR as fractions of the frame (``LaneOptions.src``)."""
        w, h = self.image_size
        vx = self.vanishing_point[0]
        y_top, y_bot = self.rows()
        ht, hb = float(self.half_width_px(y_top)), float(self.half_width_px(y_bot))
        pts = ((vx - ht, y_top), (vx - hb, y_bot), (vx + hb, y_bot), (vx + ht, y_top))
        return tuple((x / w, y / h) for x, y in pts)

    def lane_width_range(self, lo: float, hi: float) -> tuple[float, float]:
        """Plausible measured lane widths: (lo, hi) scaled by what an assumed height may be off by."""
        if self.camera_height_range_m is None:
            return lo, hi
        h_min, h_max = self.camera_height_range_m
        return lo * self.camera_height_m / h_max, hi * self.camera_height_m / h_min

    def width_spread_tolerance_m(self) -> float:
        """What the VP uncertainty and one source pixel per line do to the lane width at the far end."""
        y_top, _ = self.rows()
        rows_below = max(y_top - self.vanishing_point[1], 1.0)
        px_m = self.lane_width_m / (2 * float(self.half_width_px(y_top)))
        return self.lane_width_m * self.vp_sigma_px / rows_below + 2 * px_m

    def in_corridor(self, points_xy: np.ndarray) -> np.ndarray:
        """Which frame points lie in the ego corridor (one lane width wide, centred on the VP column)."""
        pts = np.asarray(points_xy, np.float64).reshape(-1, 2)
        vx, vy = self.vanishing_point
        return (pts[:, 1] > vy) & (np.abs(pts[:, 0] - vx) <= self.half_width_px(pts[:, 1]))

    def to_event(self) -> dict:
        vx, vy = self.vanishing_point
        return {"event": "geometry", "source": self.source, "vanishing_point": [round(vx, 1), round(vy, 1)],
                "horizon_y": round(vy, 1), "vp_sigma_px": round(self.vp_sigma_px, 2),
                "confidence": None if self.confidence is None else round(self.confidence, 3),
                "frames_used": self.frames_used, "focal_px": round(self.focal_px, 1), "focal_from": self.focal_from,
                "image_size": list(self.image_size)}


class CameraFile(BaseModel):
    """One camera's calibration: the lens (``drive calibrate``) and the road geometry (``drive run``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = Field(1, description="file format version")
    lens: CameraCalibration | None = Field(None, description="lens calibration, if any")
    road: RoadGeometry | None = Field(None, description="road geometry, if any")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.replace(path)
        return path


def load_camera_file(path: str | Path) -> CameraFile:
    """A ``camera.json`` (lens and/or road) or a plain lens calibration file from ``drive calibrate``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from exc
    if isinstance(data, dict) and ("lens" in data or "road" in data):
        try:
            return CameraFile.model_validate(data)
        except ValueError as exc:
            raise ValueError(f"{path} is not a camera file written by `edgewise drive run`: {exc}") from exc
    return CameraFile(lens=CameraCalibration.load(path))
