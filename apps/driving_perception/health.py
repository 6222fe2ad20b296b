"""Health monitor: is perception trustworthy *now*? OK / DEGRADED / FAILED, with reasons.

Inputs, each on the monitor's clock (``time.monotonic`` or any callable, a fake one in tests;
offline runs use the video's own timeline):

* ``frame_arrived(image)`` -- a frame came from the camera (FPS, timeout, frozen camera);
* ``frame_dropped()``      -- a frame was skipped because it would have been late;
* ``model_result(latency_s, valid)`` -- one detector run and whether its output was finite;
* ``frame_done(processing_s)``       -- end-to-end time of a processed frame (deadline);
* ``lanes_seen(found, t)``            -- whether this frame had usable lanes;
* ``source_problem(state, reason)``   -- the source failed or ended early (sticky, immediate).

The scene measure is perceptual, not bytewise: the frame in grey, averaged over a
``scene_grid`` of blocks (32x18: blocks of ~1000 pixels at 960x540, so codec and sensor
noise averages out to a fraction of a grey level), compared with the previous frame's. A
block whose mean moved by more than ``scene_diff`` grey levels has changed: no changed block
for ``frozen_frames`` frames is a frozen scene; changed blocks covering ``moving_share`` of
the lower half (the road) mean the vehicle is moving.

``check()`` turns them into a state:

========== ===========================================================================
FAILED     no frame for ``frame_timeout_s``; ``frozen_frames`` frames in a row with no
           changed block (frozen scene); NaN/Inf or otherwise invalid model output, a
           source that could not be opened or delivered no frame (immediately)
DEGRADED   FPS over ``fps_window_s`` below ``min_fps``; median model latency over
           ``model_budget_ms``; dropped share over the last ``drop_window`` frames above
           ``max_drop_share``; share of frames over the per-frame deadline above
           ``max_late_share`` (each must hold for ``degrade_after`` checks in a row); a source
           that ended before its declared frame count or skipped unreadable frames
           (immediately); lanes lost for more than ``lanes_lost_s`` while moving (lanes only:
           detection, tracks and FCW stay available, ``available`` stays True)
OK         none of the above
========== ===========================================================================

Hysteresis: going to a *better* state needs ``recover_after`` consecutive checks that
agree, so a flapping condition does not flap the output. While the state is not OK,
``available`` is False: the pipeline then reports "perception unavailable" and never
presents tracks as current.
"""
from __future__ import annotations

import enum
import threading
import time
from collections import deque
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class HealthState(str, enum.Enum):
    OK = "OK"
    DEGRADED = "DEGRADED"
    FAILED = "FAILED"

    @property
    def level(self) -> int:
        return {"OK": 0, "DEGRADED": 1, "FAILED": 2}[self.value]


class HealthOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    frame_timeout_s: float = Field(1.0, gt=0, description="no frame for this long -> FAILED")
    frozen_frames: int = Field(15, ge=2, description="frames in a row with no changed block -> FAILED (frozen)")
    scene_grid: tuple[int, int] = Field((32, 18), description="blocks (columns, rows) the scene measure averages over")
    scene_diff: float = Field(2.0, gt=0, description="grey levels a block mean must move to count as changed "
                              "(codec noise on a frozen 960x540 MP4 moves them by < 0.7)")
    moving_share: float = Field(0.05, gt=0, le=1, description="changed share of the lower half -> vehicle moving")
    lanes_lost_s: float | None = Field(3.0, gt=0, description="lanes lost this long while moving -> DEGRADED "
                                       "(None: off)")
    min_fps: float = Field(10.0, ge=0, description="input frame rate below this -> DEGRADED")
    fps_window_s: float = Field(2.0, gt=0, description="window over which FPS is measured")
    model_budget_ms: float | None = Field(100.0, gt=0, description="median model latency above this -> DEGRADED "
                                          "(None: off)")
    latency_window: int = Field(10, ge=1, description="model runs the median is taken over")
    max_drop_share: float = Field(0.25, ge=0, le=1, description="dropped share above this -> DEGRADED")
    drop_window: int = Field(30, ge=2, description="frames the dropped share is taken over")
    deadline_s: float | None = Field(None, gt=0, description="per-frame processing deadline (None: off)")
    max_late_share: float = Field(0.5, ge=0, le=1, description="share of frames over the deadline -> DEGRADED")
    degrade_after: int = Field(3, ge=1, description="checks in a row a DEGRADED condition must hold")
    recover_after: int = Field(10, ge=1, description="checks in a row needed to step to a better state")


class HealthMonitor:
    """Thread-safe: a watchdog thread may call ``check()`` while the pipeline feeds it."""

    def __init__(self, options: HealthOptions | None = None, clock: Callable[[], float] = time.monotonic):
        self.options = options or HealthOptions()
        self.clock = clock
        self._lock = threading.Lock()
        o = self.options
        self.state = HealthState.OK
        self.reasons: list[str] = []
        self.transitions: list[dict] = []
        self._arrivals: deque[float] = deque()
        self._last_frame: float = clock()
        self._signature: np.ndarray | None = None
        self._same = 0
        self._moving_t: float | None = None
        self._lanes_lost_since: float | None = None
        self._lanes_t: float | None = None
        self._sticky: list[tuple[HealthState, str]] = []
        self._clean_streak = o.recover_after
        self._latencies: deque[float] = deque(maxlen=o.latency_window)
        self._drops: deque[bool] = deque(maxlen=o.drop_window)
        self._late: deque[bool] = deque(maxlen=o.drop_window)
        self._invalid = False
        self._bad_streak = 0
        self._good_streak = 0

    # -- inputs ----------------------------------------------------------------------------
    def frame_arrived(self, image: np.ndarray | None = None, t: float | None = None) -> None:
        t = self.clock() if t is None else t
        with self._lock:
            self._last_frame = t
            self._arrivals.append(t)
            while self._arrivals and t - self._arrivals[0] > self.options.fps_window_s:
                self._arrivals.popleft()
            self._drops.append(False)
            if image is not None:
                sig = self.scene_signature(image)
                if self._signature is not None and self._signature.shape == sig.shape:
                    changed = np.abs(sig - self._signature) > self.options.scene_diff
                    self._same = 0 if changed.any() else self._same + 1
                    if changed[changed.shape[0] // 2:].mean() >= self.options.moving_share:
                        self._moving_t = t
                else:
                    self._same = 0
                self._signature = sig

    def scene_signature(self, image: np.ndarray) -> np.ndarray:
        """Block means of the frame in grey (float32, ``scene_grid``)."""
        import cv2

        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return cv2.resize(grey.astype(np.float32), self.options.scene_grid, interpolation=cv2.INTER_AREA)

    def lanes_seen(self, found: bool, t: float | None = None) -> None:
        t = self.clock() if t is None else t
        with self._lock:
            self._lanes_t = t
            if found:
                self._lanes_lost_since = None
            elif self._lanes_lost_since is None:
                self._lanes_lost_since = t

    def source_problem(self, state: HealthState, reason: str) -> None:
        """A fault of the source itself (unavailable, ended early, unreadable frames): holds to the end."""
        with self._lock:
            self._sticky.append((state, reason))

    def moving(self, now: float | None = None) -> bool:
        """The road changed within the last second."""
        now = self.clock() if now is None else now
        return self._moving_t is not None and now - self._moving_t <= 1.0

    def frame_dropped(self, n: int = 1) -> None:
        with self._lock:
            self._drops.extend([True] * n)

    def model_result(self, latency_s: float, valid: bool = True) -> None:
        with self._lock:
            self._latencies.append(latency_s)
            self._invalid = not valid

    def frame_done(self, processing_s: float) -> None:
        if self.options.deadline_s is not None:
            with self._lock:
                self._late.append(processing_s > self.options.deadline_s)

    # -- evaluation ----------------------------------------------------------------------
    def measures(self, now: float | None = None) -> dict:
        """The raw numbers behind the state (for logs and the latency summary)."""
        now = self.clock() if now is None else now
        arr = self._arrivals
        span = arr[-1] - arr[0] if len(arr) > 1 else 0.0
        return {
            "since_last_frame_s": now - self._last_frame,
            "fps": (len(arr) - 1) / span if span > 0 else None,
            "fps_span_s": span,
            "model_p50_ms": float(np.median(self._latencies)) * 1e3 if self._latencies else None,
            "drop_share": sum(self._drops) / len(self._drops) if self._drops else 0.0,
            "late_share": sum(self._late) / len(self._late) if self._late else 0.0,
            "identical_frames": self._same + 1 if self._signature is not None else 0,
            "moving": self.moving(now),
            "lanes_lost_s": None if self._lanes_lost_since is None else self._lanes_t - self._lanes_lost_since,
        }

    def _conditions(self, now: float) -> tuple[list[str], list[str], list[str]]:
        """(failed, degraded, degraded-lanes-only) reasons."""
        o, m = self.options, self.measures(now)
        failed = [r for st, r in self._sticky if st == HealthState.FAILED]
        degraded: list[str] = []
        lanes: list[str] = []
        if m["since_last_frame_s"] > o.frame_timeout_s:
            failed.append(f"no frame for {m['since_last_frame_s']:.2f} s (timeout {o.frame_timeout_s} s)")
        if m["identical_frames"] >= o.frozen_frames:
            failed.append(f"scene frozen ({m['identical_frames']} frames without change)")
        if self._invalid:
            failed.append("invalid model output (NaN/Inf)")
        if m["fps"] is not None and m["fps_span_s"] >= 0.9 * o.fps_window_s and m["fps"] < o.min_fps:
            degraded.append(f"{m['fps']:.1f} FPS < {o.min_fps:g}")
        if o.model_budget_ms is not None and m["model_p50_ms"] is not None and m["model_p50_ms"] > o.model_budget_ms:
            degraded.append(f"model {m['model_p50_ms']:.0f} ms > budget {o.model_budget_ms:g} ms")
        if m["drop_share"] > o.max_drop_share:
            degraded.append(f"{m['drop_share']:.0%} frames dropped > {o.max_drop_share:.0%}")
        if o.deadline_s is not None and m["late_share"] > o.max_late_share:
            degraded.append(f"{m['late_share']:.0%} frames over the {o.deadline_s * 1e3:.0f} ms deadline")
        if o.lanes_lost_s is not None and m["lanes_lost_s"] is not None and m["lanes_lost_s"] > o.lanes_lost_s \
                and m["moving"]:
            lanes.append(f"lanes lost for {m['lanes_lost_s']:.1f} s while moving (no LDW; lead vehicle from "
                         f"the ego corridor)")
        return failed, degraded, lanes

    def check(self, now: float | None = None) -> HealthState:
        """Evaluate the conditions once (call per frame, and from a watchdog while none come)."""
        now = self.clock() if now is None else now
        with self._lock:
            failed, degraded, lanes = self._conditions(now)
            sticky = [r for st, r in self._sticky if st == HealthState.DEGRADED]
            self._bad_streak = self._bad_streak + 1 if degraded else 0
            self._clean_streak = 0 if failed or degraded or sticky else self._clean_streak + 1
            if failed:
                target, reasons = HealthState.FAILED, failed + sticky + degraded + lanes
            elif sticky or (degraded and (self._bad_streak >= self.options.degrade_after
                                          or self.state != HealthState.OK)):
                target, reasons = HealthState.DEGRADED, sticky + degraded + lanes
            elif lanes:
                target, reasons = HealthState.DEGRADED, lanes
            else:
                target, reasons = HealthState.OK, []
            if target.level > self.state.level:
                self._good_streak = 0
                self._set(target, reasons, now)
            elif target.level < self.state.level:
                self._good_streak += 1
                if self._good_streak >= self.options.recover_after:
                    self._good_streak = 0
                    self._set(target, reasons, now)
            else:
                self._good_streak = 0
                self.reasons = reasons
            return self.state

    def _set(self, state: HealthState, reasons: list[str], now: float) -> None:
        self.transitions.append({"event": "health", "t": round(now, 4), "from": self.state.value,
                                 "to": state.value, "reasons": reasons})
        self.state, self.reasons = state, reasons

    @property
    def available(self) -> bool:
        """True while the state is OK, or DEGRADED only because the lanes are lost (and no
        other fault for ``recover_after`` checks): outputs may be presented as current."""
        if self.state == HealthState.OK:
            return True
        return self.state == HealthState.DEGRADED and self._clean_streak >= self.options.recover_after
