"""Vanishing point of the road from line segments, by robust intersection voting.

Lane lines, road edges, guard rails and the edges of the carriageway are parallel on the
ground, so in a forward-looking camera their images meet at one point: the vanishing point
(VP) of the road direction. Its row is the horizon (zero roll assumed).

``segments(frame)`` finds line segments with OpenCV's LSD (``cv2.createLineSegmentDetector``)
on a copy scaled to ``work_width`` pixels, keeps the ones that can point at a forward VP
(long enough, neither near-horizontal nor near-vertical) and returns them in frame pixels.
``vote(segments)`` is RANSAC over segment pairs: each hypothesis is the intersection of two
segments drawn with probability proportional to their length; it scores the total length of
segments whose direction points at it (angle under ``angle_tol_deg``, widened to the angular
precision of short segments) with support required on both sides of it below the horizon.
The winner is refined by weighted least squares over its inliers (distances in pixels).

Every parameter is relative to the frame (fractions of the diagonal, angles), so the same
values hold for any camera size. The RNG is seeded: a result is reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class VanishingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    work_width: int = Field(640, ge=160, description="segments are found on a copy this wide")
    min_length_frac: float = Field(0.025, gt=0, description="shortest segment kept, fraction of the frame diagonal")
    angle_range_deg: tuple[float, float] = Field((12.0, 82.0), description="kept segment angles from the horizontal")
    angle_tol_deg: float = Field(1.5, gt=0, description="a segment votes for a VP its direction points at within this")
    hypotheses: int = Field(600, ge=10, description="RANSAC pair hypotheses")
    vp_region: tuple[float, float, float, float] = Field(
        (0.1, 0.15, 0.9, 0.8),
        description="where a forward camera's VP can lie: x0, y0, x1, y1 as fractions of the frame")
    min_side_share: float = Field(0.05, ge=0, le=0.5, description="least share of the inlier length left and right "
                                  "of the VP below the horizon (a road converges from both sides)")
    seed: int = Field(0, description="RANSAC seed")


@dataclass
class VanishingPoint:
    """A VP in frame pixels with its support: ``inlier_share`` of the kept segment length
    points at it; ``n_segments`` were kept; ``residual_px`` is the weighted RMS distance of
    the inlier lines from it."""

    x: float
    y: float
    inlier_share: float
    n_segments: int
    residual_px: float


class VanishingPointEstimator:
    def __init__(self, options: VanishingOptions | None = None):
        self.options = options or VanishingOptions()
        self._lsd = cv2.createLineSegmentDetector(cv2.LSD_REFINE_STD)

    def segments(self, frame: np.ndarray) -> np.ndarray:
        """(N, 4) float64 segments x1, y1, x2, y2 in frame pixels, filtered for a forward VP."""
        o = self.options
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        scale = min(1.0, o.work_width / gray.shape[1])
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        found = self._lsd.detect(small)[0]
        if found is None:
            return np.zeros((0, 4))
        seg = found.reshape(-1, 4).astype(np.float64) / scale
        h, w = gray.shape[:2]
        d = seg[:, 2:] - seg[:, :2]
        length = np.hypot(d[:, 0], d[:, 1])
        angle = np.degrees(np.arctan2(np.abs(d[:, 1]), np.abs(d[:, 0])))
        lo, hi = o.angle_range_deg
        keep = (length >= o.min_length_frac * np.hypot(w, h)) & (angle >= lo) & (angle <= hi)
        return seg[keep]

    def vote(self, seg: np.ndarray, size: tuple[int, int]) -> VanishingPoint | None:
        """The VP of ``seg`` (N, 4) in a frame of ``size`` = (w, h), or None without support."""
        o = self.options
        if len(seg) < 4:
            return None
        w, h = size
        p1, p2 = seg[:, :2], seg[:, 2:]
        d = p2 - p1
        length = np.hypot(d[:, 0], d[:, 1])
        u = d / length[:, None]
        mid = (p1 + p2) / 2
        lines = np.cross(np.c_[p1, np.ones(len(p1))], np.c_[p2, np.ones(len(p2))])
        lines /= np.hypot(lines[:, 0], lines[:, 1])[:, None]        # a x + b y + c, (a, b) unit: distance in px
        tol = np.maximum(np.radians(o.angle_tol_deg), np.arctan(2.0 / length))   # short segments: ~2 px at an end
        x0, y0, x1, y1 = o.vp_region[0] * w, o.vp_region[1] * h, o.vp_region[2] * w, o.vp_region[3] * h
        rng = np.random.default_rng(o.seed)
        p = length / length.sum()
        i, j = rng.choice(len(seg), (2, o.hypotheses), p=p)
        pts = np.cross(lines[i], lines[j])
        ok = (i != j) & (np.abs(pts[:, 2]) > 1e-9)
        pts = pts[ok, :2] / pts[ok, 2:3]
        pts = pts[(pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)]
        if len(pts) == 0:
            return None
        best, best_score = None, 0.0
        for chunk in np.array_split(pts, max(1, len(pts) // 200)):
            inl = self._inliers(chunk, mid, u, tol)                        # (H, N)
            score = self._score(inl, chunk, mid, length)
            k = int(np.argmax(score))
            if score[k] > best_score:
                best, best_score = chunk[k], float(score[k])
        if best is None or best_score <= 0:
            return None
        vp = best
        for _ in range(3):                                                  # refine on the inliers
            inl = self._inliers(vp[None], mid, u, tol)[0]
            if inl.sum() < 2:
                break
            a = lines[inl] * np.sqrt(length[inl])[:, None]
            m = a[:, :2]
            refined = np.linalg.lstsq(m, -a[:, 2], rcond=None)[0]
            if not np.all(np.isfinite(refined)):
                break
            vp = refined
        inl = self._inliers(vp[None], mid, u, tol)[0]
        res = lines[inl] @ np.r_[vp, 1.0]
        rms = float(np.sqrt(np.average(res ** 2, weights=length[inl]))) if inl.any() else float("inf")
        return VanishingPoint(float(vp[0]), float(vp[1]), float(length[inl].sum() / length.sum()), len(seg), rms)

    @staticmethod
    def _inliers(vps: np.ndarray, mid: np.ndarray, u: np.ndarray, tol: np.ndarray) -> np.ndarray:
        to = vps[:, None, :] - mid[None, :, :]                              # (H, N, 2) midpoint -> VP
        dist = np.hypot(to[..., 0], to[..., 1]) + 1e-9
        sin = np.abs(to[..., 0] * u[None, :, 1] - to[..., 1] * u[None, :, 0]) / dist
        return sin < np.sin(tol)[None, :]

    def _score(self, inl: np.ndarray, vps: np.ndarray, mid: np.ndarray, length: np.ndarray) -> np.ndarray:
        below = mid[None, :, 1] > vps[:, None, 1]
        left = (mid[None, :, 0] < vps[:, None, 0]) & below
        right = (mid[None, :, 0] >= vps[:, None, 0]) & below
        total = inl @ length
        lw, rw = (inl & left) @ length, (inl & right) @ length
        share = self.options.min_side_share
        return np.where((lw >= share * total) & (rw >= share * total), total, 0.0)
