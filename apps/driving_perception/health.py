"""Health monitor: is perception trustworthy *now*? OK / DEGRADED / FAILED, with reasons.

Inputs, each on the monitor's clock (``time.monotonic`` or any callable, a fake one in tests;
offline runs use the video's own timeline):

* ``frame_arrived(image)`` -- a frame came from the camera (FPS, timeout, frozen camera);
* ``frame_dropped()``      -- a frame was skipped because it would have been late;
* ``model_result(latency_s, valid)`` -- one detector run and whether its output was finite;
* ``frame_done(processing_s)``       -- end-to-end time of a processed frame (deadline).

``check()`` turns them into a state:

========== ===========================================================================
FAILED     no frame for ``frame_timeout_s``; ``frozen_frames`` identical frames in a row;
           NaN/Inf or otherwise invalid model output (immediately)
DEGRADED   FPS over ``fps_window_s`` below ``min_fps``; median model latency over
           ``model_budget_ms``; dropped share over the last ``drop_window`` frames above
           ``max_drop_share``; share of frames over the per-frame deadline above
           ``max_late_share`` (each must hold for ``degrade_after`` checks in a row)
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
    frozen_frames: int = Field(15, ge=2, description="identical frames in a row -> FAILED (frozen camera)")
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
        self._signature: bytes | None = None
        self._same = 0
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
                sig = np.ascontiguousarray(image[:: max(1, image.shape[0] // 24), :: max(1, image.shape[1] // 32)]).tobytes()
                self._same = self._same + 1 if sig == self._signature else 0
                self._signature = sig

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
        }

    def _conditions(self, now: float) -> tuple[list[str], list[str]]:
        o, m = self.options, self.measures(now)
        failed, degraded = [], []
        if m["since_last_frame_s"] > o.frame_timeout_s:
            failed.append(f"no frame for {m['since_last_frame_s']:.2f} s (timeout {o.frame_timeout_s} s)")
        if m["identical_frames"] >= o.frozen_frames:
            failed.append(f"camera frozen ({m['identical_frames']} identical frames)")
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
        return failed, degraded

    def check(self, now: float | None = None) -> HealthState:
        """Evaluate the conditions once (call per frame, and from a watchdog while none come)."""
        now = self.clock() if now is None else now
        with self._lock:
            failed, degraded = self._conditions(now)
            self._bad_streak = self._bad_streak + 1 if degraded else 0
            if failed:
                target, reasons = HealthState.FAILED, failed + degraded
            elif degraded and (self._bad_streak >= self.options.degrade_after or self.state != HealthState.OK):
                target, reasons = HealthState.DEGRADED, degraded
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
        """True only while the state is OK: outputs may be presented as current."""
        return self.state == HealthState.OK
