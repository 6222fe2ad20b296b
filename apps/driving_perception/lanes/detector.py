"""Lane finding: undistort -> bird's-eye warp -> thresholds -> line fits -> curvature, offset.

The classic pipeline of Udacity's "Advanced Lane Finding", made a per-frame stage:

1. optional undistortion (a :class:`~.calibration.CameraCalibration`);
2. perspective warp of the road trapezoid onto the rectangle ``dst`` (fractions of a
   ``bev_size`` bird's-eye image). The trapezoid is a preset's ``src`` (fractions of the
   frame) when one is given; otherwise it is derived from the road geometry
   (:mod:`.geometry`): a saved one, or one estimated from the stream's first frames and
   re-estimated when the camera moves (:mod:`.road`, :mod:`.vanishing`);
3. binary mask = HLS S-channel threshold OR Sobel-x (on L) threshold;
4. lane pixels by a sliding-window search seeded by a column histogram of the lower half,
   or, while the previous fit is good, by a search in a band around it;
5. a 2nd-order fit ``x = A y^2 + B y + C`` per line (bird's-eye pixels);
6. sanity checks (both lines found, lane width plausible -- widened by what an assumed
   camera height may be off by --, lines near parallel -- within ``max_width_spread_m``
   plus what the geometry's VP uncertainty and one source pixel allow); an EMA
   over the good frames' fits; after ``lost_after`` bad frames in a row the state becomes
   ``lost`` (no lanes reported) until a good frame comes back.

Units and conventions
---------------------
* Metres per bird's-eye pixel follow the Udacity convention for a 1280x720 bird's-eye
  view whose ``dst`` is about 700 px wide per lane: ``ym_per_pix = 30/720`` (the warped
  image covers about 30 m of road) and ``xm_per_pix = 3.7/700`` (a US lane is 3.7 m). For
  another ``bev_size`` they scale with it: ``ym = 30 / bev_h``, ``xm = 3.7 / (700 * bev_w / 1280)``.
* Curvature radius is reported in metres at the bottom of the image (nearest the car),
  the mean of the two lines; a straight road gives a few km or more.
* ``offset_m`` is the vehicle's lateral offset from the lane centre assuming the camera
  sits at the middle of the car: **positive = vehicle right of the lane centre**,
  negative = left. With a preset the car is at the frame's centre column (Udacity); with a
  derived geometry it is on the ground line straight ahead of the camera
  (``RoadGeometry.camera_x_px``), and one lane of the geometry spans ``dst``'s width.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .calibration import CameraCalibration, Undistorter
from .geometry import RoadGeometry
from .road import GeometryOptions, GeometryTracker

Quad = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]


class LaneOptions(BaseModel):
    """Geometry, thresholds and checks; ``LaneOptions.preset("udacity_p1")`` for a known camera."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    src: Quad | None = Field(None, description="road trapezoid TL, BL, BR, TR as fractions of frame width/height "
                             "(a preset); None: derived from the road geometry, estimated or saved")
    geometry: GeometryOptions = Field(default_factory=GeometryOptions, description="road geometry estimation")
    dst: Quad = Field(((0.25, 0.0), (0.25, 1.0), (0.75, 1.0), (0.75, 0.0)),
                      description="where src lands in the bird's-eye image, as fractions")
    bev_size: tuple[int, int] = Field((320, 180), description="bird's-eye image (width, height) in pixels; "
                                      "320x180 measures as well as 640x360 on the test frames at a third of the cost")
    s_thresh: tuple[int, int] = Field((170, 255), description="HLS saturation band kept")
    sx_thresh: tuple[int, int] = Field((20, 100), description="scaled |Sobel x| band kept (on lightness)")
    n_windows: int = Field(9, ge=3, description="sliding windows per line")
    margin_frac: float = Field(100 / 1280, description="window / search half-width, fraction of bev width")
    min_pix_frac: float = Field(50 / (1280 * 720), description="pixels (fraction of bev area) that re-centre a window")
    min_line_pixels: int = Field(60, description="fewest pixels a line fit may rest on")
    road_length_m: float = Field(30.0, description="metres of road the bird's-eye height covers (30/720 per px at 720)")
    lane_width_m: float = Field(3.7, description="lane width the dst rectangle shows")
    lane_width_px_at_1280: float = Field(700.0, description="that width in pixels of a 1280-wide bird's-eye view")
    width_range_m: tuple[float, float] = Field((2.5, 5.0), description="plausible lane widths")
    max_width_spread_m: float = Field(0.8, description="max (widest - narrowest) along the lane: parallelism check, "
                                      "widened by what the geometry's uncertainty allows (RoadGeometry)")
    smoothing: float = Field(0.3, gt=0.0, le=1.0, description="EMA weight of the newest good fit")
    lost_after: int = Field(5, ge=1, description="bad frames in a row before the state is 'lost'")

    @classmethod
    def preset(cls, name: str, **overrides) -> "LaneOptions":
        if name not in LANE_PRESETS:
            raise ValueError(f"unknown lane preset {name!r}; expected one of {sorted(LANE_PRESETS)}")
        return cls(src=LANE_PRESETS[name], **overrides)


# Road trapezoids (src) of known cameras, as fractions of the frame. Measure your own on a
# straight road: the four corners of a lane rectangle, from ~20 m ahead down to the bonnet.
LANE_PRESETS: dict[str, Quad] = {
    "udacity_advanced": ((585 / 1280, 460 / 720), (203 / 1280, 1.0), (1127 / 1280, 1.0), (695 / 1280, 460 / 720)),
    "udacity_p1": ((418 / 960, 350 / 540), (150 / 960, 1.0), (850 / 960, 1.0), (548 / 960, 350 / 540)),
}


@dataclass
class LaneResult:
    """One frame's lanes. ``state`` is 'ok' (fit from this frame), 'coasting' (this frame
    failed the checks; the last good fit is shown) or 'lost' (no lanes)."""

    state: str
    left_fit: np.ndarray | None = None        # bird's-eye pixel fits x = A y^2 + B y + C
    right_fit: np.ndarray | None = None
    curvature_m: float | None = None
    offset_m: float | None = None
    lane_width_m: float | None = None
    polygon: np.ndarray | None = None         # (2K, 2) int32 lane area in frame pixels
    reason: str = ""
    geometry: RoadGeometry | None = None      # the road geometry in use (VP, horizon, corridor)
    events: list[dict] = field(default_factory=list)   # geometry events of this frame
    _to_bev: np.ndarray | None = field(default=None, repr=False)

    @property
    def available(self) -> bool:
        return self.state != "lost" and self.left_fit is not None

    def in_ego_lane(self, points_xy: np.ndarray) -> np.ndarray:
        """Which frame points (e.g. box bottom centres) lie between the two lines."""
        pts = np.asarray(points_xy, np.float64).reshape(-1, 2)
        if not self.available or len(pts) == 0:
            return np.zeros(len(pts), bool)
        bev = cv2.perspectiveTransform(pts.reshape(-1, 1, 2), self._to_bev).reshape(-1, 2)
        y = np.clip(bev[:, 1], 0, None)  # beyond the far edge the lines are taken as straight
        left = np.polyval(self.left_fit, y)
        right = np.polyval(self.right_fit, y)
        return (bev[:, 0] >= left) & (bev[:, 0] <= right)

    def to_record(self) -> dict:
        r = lambda v, n=2: None if v is None else round(float(v), n)  # noqa: E731
        rec = {"state": self.state, "curvature_m": r(self.curvature_m, 1), "offset_m": r(self.offset_m, 3),
               "lane_width_m": r(self.lane_width_m), "reason": self.reason}
        if self.geometry is not None:
            rec["geometry"] = self.geometry.source
            rec["horizon_y"] = r(self.geometry.vanishing_point[1], 1)
        return rec


class LaneDetector:
    """``lanes(frame) -> LaneResult``; keeps the temporal state between frames.

    Geometry, in order of precedence: ``options.src`` (a preset trapezoid), ``geometry``
    (a saved :class:`RoadGeometry`, still checked for camera movement), else estimated from
    the stream's first frames (``options.geometry``)."""

    def __init__(self, options: LaneOptions | None = None, calibration: CameraCalibration | None = None,
                 geometry: RoadGeometry | None = None):
        self.options = options or LaneOptions()
        self.calibration = calibration
        self.undistort = Undistorter(calibration) if calibration is not None else None
        o = self.options
        w, h = o.bev_size
        self.ym = o.road_length_m / h
        # a preset keeps the Udacity convention its trapezoid was measured with; a derived
        # trapezoid puts exactly one lane width of its geometry between dst's sides (set per frame)
        self.xm = o.lane_width_m / (o.lane_width_px_at_1280 * w / 1280.0)
        self.tracker = None if o.src is not None else GeometryTracker(
            o.geometry, o.lane_width_m, o.road_length_m, self._focal, saved=geometry)
        self._geom: dict[tuple, tuple[np.ndarray, np.ndarray, float]] = {}
        self._announced_preset = False
        self.frame_size: tuple[int, int] | None = None    # of the last (undistorted) frame
        self._last_quad = None
        self.geometry_s = 0.0                             # time the geometry tracker took on the last frame
        self.reset()

    def _focal(self, size: tuple[int, int]) -> tuple[float | None, tuple[float, float] | None]:
        if self.calibration is None:
            return None, None
        k = self.calibration.matrices(size)[0]
        return float(k[0, 0]), (float(k[0, 2]), float(k[1, 2]))

    def reset(self) -> None:
        self.left_fit: np.ndarray | None = None
        self.right_fit: np.ndarray | None = None
        self.bad_frames = 0
        self._prev_raw: tuple[np.ndarray, np.ndarray] | None = None

    # -- geometry ------------------------------------------------------------------------
    def road_geometry(self, size: tuple[int, int]) -> RoadGeometry | None:
        """The geometry in use for frames of ``size`` (a preset's implied one, or the tracker's)."""
        if self.options.src is not None:
            return RoadGeometry.from_quad(self.options.src, size, self.options.lane_width_m, self.options.road_length_m)
        g = self.tracker.geometry
        return None if g is None else g.scaled(size)

    def _quad(self, size: tuple[int, int]):
        if self.options.src is not None:
            return self.options.src
        g = self.road_geometry(size)
        return None if g is None else g.quad()

    def _geometry(self, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, float]:
        """(M frame->bev, Minv, vehicle x in bev) for frames of size (w, h)."""
        quad = self._quad(size)
        if quad is None:
            raise ValueError("no road geometry yet: feed frames first, or give a preset or a saved geometry")
        key = (size, quad)
        if key not in self._geom:
            w, h = size
            bw, bh = self.options.bev_size
            src = np.float32([(x * w, y * h) for x, y in quad])
            dst = np.float32([(x * bw, y * bh) for x, y in self.options.dst])
            m = cv2.getPerspectiveTransform(src, dst)
            minv = cv2.getPerspectiveTransform(dst, src)
            g = None if self.options.src is not None else self.road_geometry(size)
            car_px = w / 2.0 if g is None else g.camera_x_px(h - 1.0)   # presets: the frame centre (Udacity)
            car = cv2.perspectiveTransform(np.float64([[[car_px, h - 1.0]]]), m)[0, 0, 0]
            if len(self._geom) > 8:
                self._geom.clear()
            self._geom[key] = (m, minv, float(car))
        return self._geom[key]

    def warp(self, frame: np.ndarray) -> np.ndarray:
        m, _, _ = self._geometry((frame.shape[1], frame.shape[0]))
        return cv2.warpPerspective(frame, m, self.options.bev_size, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)

    def threshold(self, bev: np.ndarray) -> np.ndarray:
        """Binary uint8 mask (1 = lane pixel candidate) of a BGR bird's-eye image."""
        o = self.options
        hls = cv2.cvtColor(bev, cv2.COLOR_BGR2HLS)
        light, sat = hls[:, :, 1], hls[:, :, 2]
        sobel = np.abs(cv2.Sobel(light, cv2.CV_32F, 1, 0, ksize=3))
        peak = float(sobel.max())
        scaled = (sobel * (255.0 / peak)).astype(np.uint8) if peak > 0 else np.zeros_like(light)
        sx = cv2.inRange(scaled, o.sx_thresh[0], o.sx_thresh[1])
        s = cv2.inRange(sat, o.s_thresh[0], o.s_thresh[1])
        return ((sx | s) > 0).astype(np.uint8)

    # -- pixel search ----------------------------------------------------------------------
    def _sliding_window(self, ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int]):
        o = self.options
        h, w = shape
        hist = np.bincount(xs[ys >= h // 2], minlength=w)
        mid = w // 2
        bases = [int(np.argmax(hist[:mid])), int(mid + np.argmax(hist[mid:]))]
        margin = max(4, int(o.margin_frac * w))
        min_pix = max(5, int(o.min_pix_frac * w * h))
        win_h = h // o.n_windows
        picked = []
        for base in bases:
            idx = []
            cur = base
            for k in range(o.n_windows):
                y_lo, y_hi = h - (k + 1) * win_h, h - k * win_h
                sel = np.flatnonzero((ys >= y_lo) & (ys < y_hi) & (xs >= cur - margin) & (xs < cur + margin))
                idx.append(sel)
                if len(sel) > min_pix:
                    cur = int(xs[sel].mean())
            picked.append(np.concatenate(idx))
        return picked

    def _around_poly(self, ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int]):
        margin = max(4, int(self.options.margin_frac * shape[1]))
        return [np.flatnonzero(np.abs(xs - np.polyval(fit, ys)) < margin) for fit in (self.left_fit, self.right_fit)]

    # -- checks and measures ----------------------------------------------------------------
    def _check(self, left: np.ndarray, right: np.ndarray, h: int, geom: RoadGeometry) -> tuple[bool, str, float]:
        ys = np.linspace(0, h - 1, 10)
        widths = (np.polyval(right, ys) - np.polyval(left, ys)) * self.xm
        lo, hi = geom.lane_width_range(*self.options.width_range_m)
        spread_tol_m = self.options.max_width_spread_m + geom.width_spread_tolerance_m()
        if not lo <= widths[-1] <= hi:
            return False, f"lane width {widths[-1]:.2f} m outside {lo:.2f}-{hi:.2f} m", float(widths[-1])
        spread = float(widths.max() - widths.min())
        if spread > spread_tol_m:
            return False, (f"lines not parallel (width varies by {spread:.2f} m, tolerance "
                           f"{spread_tol_m:.2f} m)"), float(widths[-1])
        return True, "", float(widths[-1])

    def curvature_m(self, fit: np.ndarray, y_px: float) -> float:
        """Radius of curvature in metres of a bird's-eye pixel fit, at pixel row ``y_px``."""
        a = fit[0] * self.xm / self.ym ** 2
        b = fit[1] * self.xm / self.ym
        y = y_px * self.ym
        return float((1 + (2 * a * y + b) ** 2) ** 1.5 / max(abs(2 * a), 1e-9))

    def __call__(self, frame: np.ndarray) -> LaneResult:
        o = self.options
        if self.undistort is not None:
            frame = self.undistort(frame)
        size = (frame.shape[1], frame.shape[0])
        self.frame_size = size
        events: list[dict] = []
        if self.tracker is not None:
            t0 = time.perf_counter()
            _, events = self.tracker.update(frame)
            self.geometry_s = time.perf_counter() - t0
        elif not self._announced_preset:
            events = [dict(self.road_geometry(size).to_event(), state="preset")]
            self._announced_preset = True
        geom = self.road_geometry(size)
        if geom is None:
            self.left_fit = self.right_fit = None
            n = self.tracker.frames_seen
            return LaneResult(state="lost", reason=f"no road geometry yet (no converging lines in {n} frame"
                              f"{'s' if n != 1 else ''})", events=events)
        quad = self._quad(size)
        if quad != self._last_quad:             # a new geometry: fits in the old bird's-eye view mean nothing
            if self._last_quad is not None:
                self.reset()
            self._last_quad = quad
        m, minv, car_x = self._geometry(size)
        if o.src is None:           # one lane width of the geometry between dst's sides
            self.xm = geom.lane_width_m / ((o.dst[2][0] - o.dst[1][0]) * o.bev_size[0])
        binary = self.threshold(self.warp(frame))
        h, w = binary.shape
        ys, xs = np.nonzero(binary)
        searches = [self._around_poly] if (self.left_fit is not None and self.bad_frames == 0) else []
        searches.append(self._sliding_window)
        ok, reason, width = False, "no lane pixels", None
        for search in searches:
            li, ri = search(ys, xs, (h, w))
            if len(li) < o.min_line_pixels or len(ri) < o.min_line_pixels:
                reason = f"too few line pixels (left {len(li)}, right {len(ri)})"
                continue
            left = np.polyfit(ys[li], xs[li], 2)
            right = np.polyfit(ys[ri], xs[ri], 2)
            ok, reason, width = self._check(left, right, h, geom)
            if ok:
                break
        if ok:
            a = o.smoothing
            if self.left_fit is None:
                self.left_fit, self.right_fit = left, right
            else:
                self.left_fit = a * left + (1 - a) * self.left_fit
                self.right_fit = a * right + (1 - a) * self.right_fit
            self.bad_frames = 0
            state = "ok"
        else:
            self.bad_frames += 1
            if self.bad_frames >= o.lost_after or self.left_fit is None:
                self.left_fit = self.right_fit = None
                return LaneResult(state="lost", reason=reason, geometry=geom, events=events, _to_bev=m)
            state = "coasting"
        y_bot = h - 1.0
        lx, rx = np.polyval(self.left_fit, y_bot), np.polyval(self.right_fit, y_bot)
        curv = 0.5 * (self.curvature_m(self.left_fit, y_bot) + self.curvature_m(self.right_fit, y_bot))
        offset = (car_x - (lx + rx) / 2.0) * self.xm
        plot_y = np.linspace(0, h - 1, 12)
        pts = np.concatenate([np.stack([np.polyval(self.left_fit, plot_y), plot_y], 1),
                              np.stack([np.polyval(self.right_fit, plot_y[::-1]), plot_y[::-1]], 1)])
        poly = cv2.perspectiveTransform(pts.reshape(-1, 1, 2).astype(np.float64), minv).reshape(-1, 2)
        return LaneResult(state=state, left_fit=self.left_fit.copy(), right_fit=self.right_fit.copy(),
                          curvature_m=curv, offset_m=float(offset), lane_width_m=float((rx - lx) * self.xm),
                          polygon=np.round(poly).astype(np.int32), reason=reason, geometry=geom, events=events,
                          _to_bev=m)
