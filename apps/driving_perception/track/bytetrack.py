"""ByteTrack-style multi-object tracker (Zhang et al., 2022), on the app's Detections.

* Motion: a Kalman filter with constant velocity on (cx, cy, a, h) -- box centre, aspect
  ratio w/h, height -- and the noise model of DeepSORT/ByteTrack (std proportional to h).
* Association in two stages by IoU with the *predicted* boxes, solved with
  ``scipy.optimize.linear_sum_assignment``: high-score detections against confirmed and
  lost tracks first, then low-score detections against the confirmed tracks still
  unmatched (occluded objects often score low), then high-score leftovers against
  tentative tracks.
* States: TENTATIVE (new, needs ``min_hits`` consecutive hits) -> CONFIRMED -> LOST (missed,
  kept and extrapolated for up to ``max_age`` frames, so a short occlusion keeps the ID)
  -> REMOVED. A tentative track that misses once is removed.
* ``update(detections)`` returns only the confirmed tracks matched in *this* frame: a track
  that is not seen now is never reported as current.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import linear_sum_assignment

from sdk.detect import Detections, box_iou


class TrackState(str, enum.Enum):
    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    LOST = "lost"
    REMOVED = "removed"


class TrackerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    high_threshold: float = Field(0.5, description="detections at or above this score go to the first association")
    low_threshold: float = Field(0.1, description="detections below this score are ignored")
    new_track_threshold: float = Field(0.6, description="unmatched high detections above this start a track")
    match_iou: float = Field(0.2, description="minimum IoU (x score when fuse_score) for a first-stage match")
    low_match_iou: float = Field(0.5, description="minimum IoU for a second-stage (low score) match")
    tentative_match_iou: float = Field(0.3, description="minimum IoU to confirm a tentative track")
    min_hits: int = Field(2, ge=1, description="consecutive hits that confirm a new track")
    max_age: int = Field(30, ge=0, description="frames a lost track is kept (short occlusions)")
    fuse_score: bool = Field(True, description="weight IoU by detection score in the first stage")


class KalmanBoxFilter:
    """Constant-velocity Kalman filter on (cx, cy, a, h), one step = one frame."""

    std_pos = 1.0 / 20
    std_vel = 1.0 / 160

    def __init__(self) -> None:
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)
        self.H = np.eye(4, 8)

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = z[3]
        std = [2 * self.std_pos * h, 2 * self.std_pos * h, 1e-2, 2 * self.std_pos * h,
               10 * self.std_vel * h, 10 * self.std_vel * h, 1e-5, 10 * self.std_vel * h]
        return np.r_[z, np.zeros(4)], np.diag(np.square(std))

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        q = np.diag(np.square([self.std_pos * h, self.std_pos * h, 1e-2, self.std_pos * h,
                               self.std_vel * h, self.std_vel * h, 1e-5, self.std_vel * h]))
        return self.F @ mean, self.F @ cov @ self.F.T + q

    def update(self, mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        r = np.diag(np.square([self.std_pos * h, self.std_pos * h, 1e-1, self.std_pos * h]))
        s = self.H @ cov @ self.H.T + r
        gain = np.linalg.solve(s, self.H @ cov).T
        mean = mean + gain @ (z - self.H @ mean)
        cov = cov - gain @ s @ gain.T
        return mean, cov


def xyxy_to_cxcyah(b: np.ndarray) -> np.ndarray:
    w, h = b[2] - b[0], max(b[3] - b[1], 1e-6)
    return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, w / h, h], np.float64)


def cxcyah_to_xyxy(m: np.ndarray) -> np.ndarray:
    h = max(m[3], 1e-6)
    w = m[2] * h
    return np.array([m[0] - w / 2, m[1] - h / 2, m[0] + w / 2, m[1] + h / 2])


@dataclass
class Track:
    track_id: int
    mean: np.ndarray
    cov: np.ndarray
    score: float
    class_id: int
    state: TrackState = TrackState.TENTATIVE
    hits: int = 1
    age: int = 1
    last_frame: int = 0
    last_box: np.ndarray = field(default_factory=lambda: np.zeros(4))

    @property
    def predicted_xyxy(self) -> np.ndarray:
        return cxcyah_to_xyxy(self.mean)


def _assign(cost: np.ndarray, max_cost: float) -> tuple[list[tuple[int, int]], set[int], set[int]]:
    if cost.size == 0:
        return [], set(range(cost.shape[0])), set(range(cost.shape[1]))
    rows, cols = linear_sum_assignment(cost)
    matches = [(r, c) for r, c in zip(rows, cols, strict=True) if cost[r, c] <= max_cost]
    mr = {r for r, _ in matches}
    mc = {c for _, c in matches}
    return matches, set(range(cost.shape[0])) - mr, set(range(cost.shape[1])) - mc


class ByteTrack:
    """``tracker.update(detections) -> Detections`` with ``tracker_id`` set."""

    def __init__(self, options: TrackerOptions | None = None):
        self.options = options or TrackerOptions()
        self.kf = KalmanBoxFilter()
        self.tracks: list[Track] = []
        self.frame_id = 0
        self._next_id = 1

    def reset(self) -> None:
        self.tracks, self.frame_id, self._next_id = [], 0, 1

    def _cost(self, tracks: list[Track], dets: Detections, idx: list[int], fuse: bool) -> np.ndarray:
        if not tracks or not idx:
            return np.zeros((len(tracks), len(idx)))
        pred = np.stack([t.predicted_xyxy for t in tracks])
        iou = box_iou(pred, dets.xyxy[idx])
        if fuse:
            iou = iou * dets.confidence[idx][None, :]
        return 1.0 - iou

    def _hit(self, t: Track, dets: Detections, j: int) -> None:
        t.mean, t.cov = self.kf.update(t.mean, t.cov, xyxy_to_cxcyah(dets.xyxy[j]))
        t.score, t.class_id = float(dets.confidence[j]), int(dets.class_id[j])
        t.hits += 1
        t.last_frame = self.frame_id
        t.last_box = dets.xyxy[j].astype(np.float64)
        if t.state == TrackState.LOST:
            t.state = TrackState.CONFIRMED
        elif t.state == TrackState.TENTATIVE and t.hits >= self.options.min_hits:
            t.state = TrackState.CONFIRMED

    def update(self, detections: Detections) -> Detections:
        o = self.options
        self.frame_id += 1
        for t in self.tracks:
            if t.state == TrackState.LOST:
                t.mean[7] = 0.0  # do not keep growing a box nobody sees
            t.mean, t.cov = self.kf.predict(t.mean, t.cov)
            t.age += 1

        scores = detections.confidence
        high = [int(i) for i in np.flatnonzero(scores >= o.high_threshold)]
        low = [int(i) for i in np.flatnonzero((scores >= o.low_threshold) & (scores < o.high_threshold))]
        det_track = np.full(len(detections), -1, np.int64)

        confirmed = [t for t in self.tracks if t.state == TrackState.CONFIRMED]
        lost = [t for t in self.tracks if t.state == TrackState.LOST]
        tentative = [t for t in self.tracks if t.state == TrackState.TENTATIVE]

        # 1) high-score detections vs confirmed + lost tracks
        pool = confirmed + lost
        m, un_t, un_d = _assign(self._cost(pool, detections, high, o.fuse_score), 1.0 - o.match_iou)
        for ti, di in m:
            self._hit(pool[ti], detections, high[di]); det_track[high[di]] = pool[ti].track_id
        rest_high = [high[d] for d in sorted(un_d)]
        # 2) low-score detections vs confirmed tracks still unmatched
        remaining = [pool[i] for i in sorted(un_t) if pool[i].state == TrackState.CONFIRMED]
        m, un_t2, _ = _assign(self._cost(remaining, detections, low, False), 1.0 - o.low_match_iou)
        for ti, di in m:
            self._hit(remaining[ti], detections, low[di]); det_track[low[di]] = remaining[ti].track_id
        for i in un_t2:
            remaining[i].state = TrackState.LOST
        # 3) leftover high detections vs tentative tracks
        m, un_tent, un_d3 = _assign(self._cost(tentative, detections, rest_high, False), 1.0 - o.tentative_match_iou)
        for ti, di in m:
            self._hit(tentative[ti], detections, rest_high[di]); det_track[rest_high[di]] = tentative[ti].track_id
        for i in un_tent:
            tentative[i].state = TrackState.REMOVED
        # 4) new tracks
        for d in sorted(un_d3):
            j = rest_high[d]
            if scores[j] < o.new_track_threshold:
                continue
            mean, cov = self.kf.initiate(xyxy_to_cxcyah(detections.xyxy[j]))
            t = Track(self._next_id, mean, cov, float(scores[j]), int(detections.class_id[j]),
                      last_frame=self.frame_id, last_box=detections.xyxy[j].astype(np.float64))
            if o.min_hits <= 1:
                t.state = TrackState.CONFIRMED
            self._next_id += 1
            self.tracks.append(t)
            det_track[j] = t.track_id
        # 5) age out lost tracks
        for t in self.tracks:
            if t.state == TrackState.LOST and self.frame_id - t.last_frame > o.max_age:
                t.state = TrackState.REMOVED
        self.tracks = [t for t in self.tracks if t.state != TrackState.REMOVED]

        current = {t.track_id for t in self.tracks
                   if t.state == TrackState.CONFIRMED and t.last_frame == self.frame_id}
        keep = np.array([tid in current for tid in det_track], bool)
        return detections[keep].replace(tracker_id=det_track[keep])

    update_with_detections = update
