"""What a streaming pipeline reports: per-stage counters and latency, the whole stream's
counters, and the events given to its ``on_event`` callback."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

__all__ = ["StageStats", "StreamStats", "StreamEvent"]

EventKind = Literal["drop", "late", "error", "source_error", "sink_error", "end"]


@dataclass(frozen=True)
class StreamEvent:
    """One thing that happened in a stream, given to ``on_event``.

    ``kind``: ``drop`` (an edge's policy discarded ``item``; ``stage`` is the stage whose
    input queue it was), ``late`` (past ``deadline_s``), ``error`` (``stage`` raised:
    ``error`` is the :class:`~sdk.errors.PipelineError`, ``fatal`` says whether the stream
    stops), ``source_error`` / ``sink_error`` (the stream ends), ``end`` (every stage has
    finished; ``message`` says why). ``t`` is ``time.monotonic()``.
    """

    kind: EventKind
    t: float
    stage: str | None = None
    message: str = ""
    item: Any = None
    error: BaseException | None = None
    fatal: bool = False


@dataclass(frozen=True)
class StageStats:
    """One stage: items ``received`` from its queue, ``emitted`` downstream, ``consumed``
    (``fn`` returned None or, fanning out, nothing), ``dropped`` by its queue's policy,
    ``gated`` by its feedback gate, ``late``, ``errors``; ``queued`` now and ``high_water``
    (the most ever queued). ``latency``: time in ``fn`` (``sdk.runtime.LatencyStats``);
    ``age``: capture time -> this stage's output (how old items are when they leave it).
    """

    name: str
    received: int = 0
    emitted: int = 0
    consumed: int = 0
    dropped: int = 0
    gated: int = 0
    late: int = 0
    errors: int = 0
    queued: int = 0
    high_water: int = 0
    latency: Any = None
    age: Any = None

    @property
    def p50_ms(self) -> float:
        return self.latency.p50_ms if self.latency is not None else 0.0

    @property
    def p90_ms(self) -> float:
        return self.latency.p90_ms if self.latency is not None else 0.0

    def to_dict(self) -> dict:
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)
                             if f.name not in ("name", "latency", "age")}
        d["latency"] = self.latency.model_dump() if self.latency is not None else None
        d["age"] = self.age.model_dump() if self.age is not None else None
        return d


@dataclass(frozen=True)
class StreamStats:
    """A snapshot of a streaming pipeline's counters.

    ``read``: items pulled from the source; ``processed``: items that finished (written to
    the sink, or consumed by a stage); ``dropped``: discarded by an edge's policy, left
    queued by ``stop(drain=False)``, or left over after the sink failed; ``late``: past the
    deadline; ``errors``: stage failures. Once a chain of one-to-one stages has ended,
    ``read == processed + dropped + errors + late + gated`` (late items counted once, when
    skipped, with ``on_late="skip"``). ``per_stage`` maps stage names to
    ``sdk.runtime.LatencyStats``, ``stages`` to :class:`StageStats`; ``end_to_end`` is
    capture -> finished.
    """

    read: int = 0
    processed: int = 0
    dropped: int = 0
    late: int = 0
    errors: int = 0
    per_stage: dict[str, Any] = field(default_factory=dict)
    end_to_end: Any = None
    source_error: str | None = None
    sink_error: str | None = None
    running: bool = False
    stages: dict[str, StageStats] = field(default_factory=dict)
    gated: int = 0

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("read", "processed", "dropped", "late", "errors", "gated",
                                           "source_error", "sink_error", "running")}
        d["per_stage"] = {k: v.model_dump() for k, v in self.per_stage.items()}
        d["end_to_end"] = self.end_to_end.model_dump() if self.end_to_end is not None else None
        d["stages"] = {k: v.to_dict() for k, v in self.stages.items()}
        return d
