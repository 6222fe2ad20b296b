"""A synthetic road clip any machine can make: known lane geometry, drifting car, a lead box.

Frames are drawn in the bird's-eye view of a preset :class:`~.lanes.detector.LaneOptions`
(``udacity_advanced`` unless one is given; so the ground truth is exact in its units: offset
in metres, curvature radius in metres) and warped into the camera view with the inverse
perspective transform. ``pinhole_road`` renders a road through a pinhole camera of known
focal length, pitch and height instead (ground truth for the vanishing-point estimator). Used by the demo and
by tests that must run without ``../shared``. YOLOX will not find the painted "car" (it
is a grey box), which is fine: the clip exercises lanes, warnings plumbing, health and
every output file.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from .lanes.detector import LaneOptions


def road_frame(offset_m: float = 0.0, radius_m: float | None = None, size: tuple[int, int] = (1280, 720),
               options: LaneOptions | None = None, dash_phase: float = 0.0, seed: int = 0) -> np.ndarray:
    """One BGR frame (``size`` = (width, height)) of a lane seen from a car ``offset_m``
    right of the lane centre (negative: left), curving with ``radius_m`` (None: straight;
    positive: bends right)."""
    o = options if options is not None and options.src is not None else LaneOptions.preset("udacity_advanced")
    o = o.model_copy(update={"bev_size": (max(640, size[0] // 2), max(360, size[1] // 2))})
    w, h = size                      # (drawn on a finer bird's-eye grid than the detector's)
    bw, bh = o.bev_size
    ym = o.road_length_m / bh
    xm = o.lane_width_m / (o.lane_width_px_at_1280 * bw / 1280.0)
    rng = np.random.default_rng(seed)
    bev = np.clip(rng.normal(95, 6, (bh, bw, 3)), 0, 255).astype(np.uint8)
    src = np.float32([(x * w, y * h) for x, y in o.src])
    dst = np.float32([(x * bw, y * bh) for x, y in o.dst])
    m = cv2.getPerspectiveTransform(src, dst)
    car_x = cv2.perspectiveTransform(np.float64([[[w / 2.0, h - 1.0]]]), m)[0, 0, 0]
    ys = np.arange(bh, dtype=np.float64)
    dist = (bh - 1 - ys) * ym                                   # metres ahead of the bottom row
    bend = np.zeros_like(dist) if radius_m is None else dist ** 2 / (2.0 * radius_m)
    centre = car_x - offset_m / xm + bend / xm
    half = o.lane_width_m / 2 / xm
    thick = max(3, bw // 100)
    for side, colour, dashed in ((-1, (235, 235, 235), True), (1, (40, 200, 235), False)):
        xs = centre + side * half
        pts = np.stack([xs, ys], 1).astype(np.int32)
        if dashed:
            period = int(6 / ym)                               # 3 m dash, 3 m gap
            on = ((ys + dash_phase / ym) % period) < period / 2
            for a, b in zip(pts[:-1][on[:-1]], pts[1:][on[:-1]], strict=True):
                cv2.line(bev, tuple(map(int, a)), tuple(map(int, b)), colour, thick)
        else:
            cv2.polylines(bev, [pts], False, colour, thick)
    minv = cv2.getPerspectiveTransform(dst, src)
    road = cv2.warpPerspective(bev, minv, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full((bh, bw), 255, np.uint8), minv, (w, h)) > 0
    frame = np.empty((h, w, 3), np.uint8)
    horizon = int(o.src[0][1] * h)
    frame[:horizon] = (np.linspace(235, 170, horizon)[:, None, None] * np.array([1.0, 0.85, 0.6])).astype(np.uint8)
    frame[horizon:] = (95, 95, 95)                              # asphalt to the sides: no false edges
    frame[mask] = road[mask]
    return frame


def write_clip(path: str | Path, n_frames: int = 75, size: tuple[int, int] = (1280, 720), fps: float = 25.0,
               options: LaneOptions | None = None) -> Path:
    """A clip where the car drifts across its lane (LDW expected) on a gentle curve, with a
    grey box ahead that grows (a stand-in lead vehicle). Returns the path (mp4v)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise OSError(f"cv2.VideoWriter could not open {path}")
    w, h = size
    try:
        for i in range(n_frames):
            t = i / fps
            offset = 0.75 * math.sin(2 * math.pi * t / (n_frames / fps))
            frame = road_frame(offset, 1500.0, size, options, dash_phase=t * 25.0, seed=i)
            s = 0.03 + 0.04 * i / max(1, n_frames - 1)       # lead box grows: closing in
            bw_, bh_ = int(s * w), int(s * h * 0.9)
            x0, y0 = w // 2 - bw_ // 2, int(0.665 * h) - bh_
            cv2.rectangle(frame, (x0, y0), (x0 + bw_, y0 + bh_), (60, 60, 60), -1)
            writer.write(frame)
    finally:
        writer.release()
    return path


def pinhole_road(size: tuple[int, int] = (960, 540), focal_px: float = 830.0, pitch_deg: float = 2.0,
                 height_m: float = 1.2, offset_m: float = 0.0, lane_width_m: float = 3.7, yaw_deg: float = 0.0,
                 radius_m: float | None = None, seed: int = 0, dashed: bool = True
                 ) -> tuple[np.ndarray, tuple[float, float]]:
    """A road seen by a pinhole camera (principal point at the centre, no roll): returns the
    BGR frame and the true vanishing point (x, y) of the road direction.

    The camera is ``height_m`` above a flat road, pitched down by ``pitch_deg``, turned right
    by ``yaw_deg``, ``offset_m`` right of its lane centre; a white line on the left (dashed:
    4 m in 12, unless ``dashed=False``), a solid yellow one on the right, the next lanes'
    dashed lines beyond, 15 cm wide each."""
    w, h = size
    cx, cy = w / 2.0, h / 2.0
    th, ps = math.radians(pitch_deg), math.radians(yaw_deg)
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    dx, dy = (u - cx) / focal_px, (v - cy) / focal_px
    yw = dy * math.cos(th) + math.sin(th)                      # camera -> world: pitch, then yaw
    zc = -dy * math.sin(th) + math.cos(th)
    xw = dx * math.cos(ps) + zc * math.sin(ps)
    zw = -dx * math.sin(ps) + zc * math.cos(ps)
    ground = yw > 1e-6
    t = np.where(ground, height_m / np.where(ground, yw, 1.0), 0.0)
    x, z = xw * t, zw * t
    rng = np.random.default_rng(seed)
    frame = np.empty((h, w, 3), np.uint8)
    sky = np.linspace(235, 170, h)[:, None, None] * np.array([1.0, 0.85, 0.6])
    frame[:] = sky.astype(np.uint8)
    road = np.clip(rng.normal(95, 6, (h, w)), 0, 255).astype(np.uint8)
    frame[ground] = road[ground][:, None]
    centre = -offset_m + (0.0 if radius_m is None else z ** 2 / (2 * radius_m))
    lat = x - centre
    half_line = 0.075
    for k, colour, dash in ((-1, (235, 235, 235), dashed), (1, (40, 200, 235), False),
                            (-3, (235, 235, 235), True), (3, (235, 235, 235), True)):
        on = ground & (np.abs(lat - k * lane_width_m / 2) < half_line) & (z > 0.5)
        if dash:
            on &= (z % 12.0) < 4.0
        frame[on] = colour
    # the VP: where the road direction (world +Z) lands in the image
    d_cam_x = -math.sin(ps)                                      # world -> camera: undo yaw, then pitch
    zc = math.cos(ps)
    d_cam_y = -zc * math.sin(th)
    d_cam_z = zc * math.cos(th)
    vp = (cx + focal_px * d_cam_x / d_cam_z, cy + focal_px * d_cam_y / d_cam_z)
    return frame, vp
