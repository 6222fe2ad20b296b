"""Reading-queue order with an anti-starvation cap.

Order (first read first):

1. studies that waited longer than ``max_wait_minutes`` (the cap), oldest first; without
   it a study the model ranked low could wait forever behind a stream of flagged ones;
2. then by priority tier: urgent > review > routine;
3. inside a tier, studies the model scored (status ``ok``) by decreasing probability, then
   abstained and not-analysed studies in arrival order (their probability means nothing,
   so they keep first-come first-served among themselves).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from apps.medical_imaging.policy import PRIORITY_RANK, Priority, Status


class Study(BaseModel):
    """One row of the worklist (what the JSON/CSV outputs and the report show)."""

    model_config = ConfigDict(extra="forbid")
    study_id: str
    arrival: datetime
    arrival_seq: int = Field(description="arrival order, ties of equal timestamps")
    status: Status
    priority: Priority
    probability: float | None = None
    reasons: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    modality: str | None = None
    model: str | None = None
    input_sha256: str | None = None
    ood_score: float | None = None
    frames: int = 1
    promoted: bool = False
    source: str | None = Field(None, description="file path: only with --include-identifiers")
    identifiers: dict[str, str] | None = Field(None, description="only with --include-identifiers")
    thumbnail: str | None = Field(None, description="thumbnail PNG path, relative to the output folder")
    heatmap: str | None = Field(None, description="occlusion heatmap overlay PNG path, relative")


def order(studies: Sequence[Study], now: datetime, max_wait_minutes: float | None = 60.0) -> list[Study]:
    """Return the studies in reading order at time ``now``; sets ``promoted`` on each."""
    cap = None if max_wait_minutes is None else timedelta(minutes=max_wait_minutes)
    out = []
    for s in studies:
        s.promoted = cap is not None and now - s.arrival > cap
        out.append(s)

    def key(s: Study):
        if s.promoted:
            return (0, 0, 0, 0.0, s.arrival, s.arrival_seq)
        scored = s.status == "ok" and s.probability is not None
        return (1, PRIORITY_RANK[s.priority], 0 if scored else 1,
                -(s.probability or 0.0) if scored else 0.0, s.arrival, s.arrival_seq)

    return sorted(out, key=key)


class Clock:
    """Injectable clock (tests use :class:`SimulatedClock`)."""

    def __init__(self, now: Callable[[], datetime] | None = None):
        from datetime import timezone
        self._now = now or (lambda: datetime.now(timezone.utc))

    def now(self) -> datetime:
        return self._now()


class SimulatedClock(Clock):
    def __init__(self, start: datetime):
        super().__init__()
        self.t = start

    def now(self) -> datetime:
        return self.t

    def advance(self, minutes: float) -> None:
        self.t += timedelta(minutes=minutes)
