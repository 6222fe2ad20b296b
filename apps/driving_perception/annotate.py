"""Draw one frame's results: lanes, tracked boxes with IDs, warnings, FPS and health banner.

When perception is unavailable (health not OK) nothing stale is drawn: no boxes, no
lanes, only the red/orange banner "PERCEPTION UNAVAILABLE" with the reasons.
"""
from __future__ import annotations

import cv2
import numpy as np

from sdk.detect import Detections

from .detections import class_name

HEALTH_COLOURS = {"OK": (60, 170, 60), "DEGRADED": (0, 140, 255), "FAILED": (0, 0, 220)}
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _colour(track_id: int) -> tuple[int, int, int]:
    if track_id < 0:
        return (200, 200, 200)
    h = (track_id * 47) % 180
    bgr = cv2.cvtColor(np.uint8([[[h, 200, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def _text(img, txt, org, scale, colour, thick=1, bg=None):
    if bg is not None:
        (w, h), base = cv2.getTextSize(txt, _FONT, scale, thick)
        cv2.rectangle(img, (org[0] - 2, org[1] - h - 3), (org[0] + w + 2, org[1] + base), bg, -1)
    cv2.putText(img, txt, org, _FONT, scale, colour, thick, cv2.LINE_AA)


class Annotator:
    """``annotator(frame, result) -> frame`` (draws in place on a copy unless ``copy=False``)."""

    def __init__(self, copy: bool = True, lane_alpha: float = 0.3):
        self.copy = copy
        self.lane_alpha = lane_alpha

    def draw_lanes(self, img: np.ndarray, lanes) -> None:
        if lanes is None or not lanes.available or lanes.polygon is None:
            return
        poly = lanes.polygon
        x0, y0 = np.maximum(poly.min(axis=0), 0)
        x1, y1 = np.minimum(poly.max(axis=0) + 1, [img.shape[1], img.shape[0]])
        if x1 > x0 and y1 > y0:  # blend only the lane's bounding box: cheap at 720p
            roi = img[y0:y1, x0:x1]
            layer = roi.copy()
            cv2.fillPoly(layer, [poly - [x0, y0]], (0, 200, 0))
            cv2.addWeighted(layer, self.lane_alpha, roi, 1 - self.lane_alpha, 0, dst=roi)
        half = len(poly) // 2
        colour = (0, 255, 255) if lanes.state == "ok" else (0, 200, 255)
        cv2.polylines(img, [poly[:half], poly[half:]], False, colour, 3, cv2.LINE_AA)

    def draw_geometry(self, img: np.ndarray, lanes) -> None:
        """The horizon and vanishing point in use; with no lanes, the ego corridor used instead."""
        geom = getattr(lanes, "geometry", None) if lanes is not None else None
        if geom is None:
            return
        h, w = img.shape[:2]
        g = geom.scaled((w, h))
        vx, vy = g.vanishing_point
        y = int(round(vy))
        for x0 in range(0, w, 24):                                   # dashed horizon
            cv2.line(img, (x0, y), (min(x0 + 12, w - 1), y), (255, 255, 0), 1, cv2.LINE_AA)
        cv2.circle(img, (int(round(vx)), y), 5, (255, 255, 0), 2, cv2.LINE_AA)
        if not lanes.available:
            hb = float(g.half_width_px(h - 1))
            for side in (-1, 1):
                cv2.line(img, (int(round(vx)), y), (int(round(vx + side * hb)), h - 1), (0, 165, 255), 2, cv2.LINE_AA)

    def draw_tracks(self, img: np.ndarray, tracks: Detections, lead_id: int | None = None) -> None:
        scale = max(0.4, img.shape[1] / 1800)
        tids = tracks.tracker_id if tracks.tracker_id is not None else np.full(len(tracks), -1)
        for box, cid, tid, score in zip(tracks.xyxy.astype(int), tracks.class_id, tids, tracks.confidence, strict=True):
            col = (0, 0, 255) if lead_id is not None and tid == lead_id else _colour(int(tid))
            cv2.rectangle(img, (box[0], box[1]), (box[2], box[3]), col, 2)
            label = f"#{tid} {class_name(cid)} {score:.2f}" if tid >= 0 else f"{class_name(cid)} {score:.2f}"
            _text(img, label, (box[0], max(12, box[1] - 4)), scale, (0, 0, 0), 1, bg=col)

    def __call__(self, frame: np.ndarray, result) -> np.ndarray:
        img = frame.copy() if self.copy else frame
        h, w = img.shape[:2]
        s = max(0.7, w / 1600)
        state = result.health
        if result.available:
            self.draw_geometry(img, result.lanes)
            self.draw_lanes(img, result.lanes)
            self.draw_tracks(img, result.tracks, result.warnings.lead_track_id if result.warnings else None)
        # health banner
        colour = HEALTH_COLOURS.get(state, (128, 128, 128))
        banner = f"{state}" if result.available else f"{state}: PERCEPTION UNAVAILABLE"
        cv2.rectangle(img, (0, 0), (w, int(34 * s)), colour, -1)
        _text(img, banner, (8, int(25 * s)), 0.8 * s, (255, 255, 255), 2)
        fps_txt = f"{result.fps:5.1f} FPS" if result.fps else "-- FPS"
        (tw, _), _ = cv2.getTextSize(fps_txt, _FONT, 0.7 * s, 2)
        _text(img, fps_txt, (w - tw - 8, int(25 * s)), 0.7 * s, (255, 255, 255), 2)
        y = int(60 * s)
        if not result.available:
            for reason in result.health_reasons[:3]:
                _text(img, reason, (8, y), 0.6 * s, (255, 255, 255), 1, bg=(0, 0, 0))
                y += int(26 * s)
            return img
        lanes = result.lanes
        for reason in result.health_reasons[:2]:                # DEGRADED for the lanes only
            _text(img, reason, (8, y), 0.6 * s, (255, 255, 255), 1, bg=(0, 100, 200))
            y += int(26 * s)
        if lanes is not None:
            if lanes.available:
                _text(img, f"lanes {lanes.state}  R {lanes.curvature_m:,.0f} m  offset {lanes.offset_m:+.2f} m",
                      (8, y), 0.6 * s, (255, 255, 255), 1, bg=(0, 0, 0))
            else:
                corridor = ": ego corridor from the vanishing point" if lanes.geometry is not None else ""
                _text(img, f"lanes lost{corridor}", (8, y), 0.6 * s, (255, 255, 255), 1, bg=(0, 0, 160))
            y += int(26 * s)
            if lanes.geometry is not None:
                g = lanes.geometry
                conf = "" if g.confidence is None else f" (confidence {g.confidence:.2f})"
                _text(img, f"geometry {g.source}{conf}  horizon y={g.vanishing_point[1]:.0f}", (8, y), 0.5 * s,
                      (255, 255, 255), 1, bg=(60, 60, 60))
                y += int(24 * s)
        wstate = result.warnings
        if wstate is not None:
            if wstate.ttc_s is not None:
                _text(img, f"lead #{wstate.lead_track_id} TTC {wstate.ttc_s:.1f} s", (8, y), 0.6 * s,
                      (255, 255, 255), 1, bg=(0, 0, 0))
                y += int(26 * s)
            if wstate.fcw:
                _text(img, "FORWARD COLLISION WARNING", (w // 2 - int(230 * s), h // 3), 1.1 * s,
                      (255, 255, 255), 3, bg=(0, 0, 230))
            if wstate.ldw:
                side = "RIGHT" if (lanes and lanes.offset_m and lanes.offset_m > 0) else "LEFT"
                _text(img, f"LANE DEPARTURE {side}", (w // 2 - int(160 * s), h // 3 + int(50 * s)), 1.0 * s,
                      (0, 0, 0), 3, bg=(0, 220, 255))
        return img
