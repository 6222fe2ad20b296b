"""A named pipeline stage and its latency recorder."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal

__all__ = ["Stage", "StageTimer", "DROP_POLICIES", "check_policy"]

#: what an edge does when its queue is full (the queues themselves are in sdk.pipeline.edges)
DROP_POLICIES = ("block", "oldest", "newest")


def check_policy(drop: str, queue_size: int) -> None:
    if drop not in DROP_POLICIES:
        raise ValueError(f"drop must be one of {DROP_POLICIES}, got {drop!r}")
    if int(queue_size) < 1:
        raise ValueError(f"queue_size must be >= 1, got {queue_size}")


@dataclass
class Stage:
    """One step of a pipeline: ``fn(item) -> item``, with a name for stats and errors.

    The other fields matter in a :class:`~sdk.pipeline.StreamingPipeline` only, where each
    stage has its own worker(s) and its own input queue:

    * ``queue_size`` / ``drop``: the bounded queue in front of this stage and its policy
      (``"block"``, ``"oldest"``, ``"newest"``); None takes the pipeline's ``queue_size`` /
      ``drop`` for the first stage and ``"block"`` for the others (a processed item is never
      discarded between stages unless asked);
    * ``fan_out``: ``fn`` returns an iterable of 0..n items (end-pointing turns audio chunks
      into utterances); otherwise ``None`` consumes the item;
    * ``flush``: called once at the end of the stream, after the last item; it returns an
      iterable of items still held (an utterance in progress) that go downstream;
    * ``gate``: a :class:`~sdk.pipeline.Gate`; items captured while it is closed are
      discarded before ``fn`` (counted as ``gated``) and ``on_gated(item)`` is told;
    * ``on_error``: ``"skip"`` or ``"raise"`` for this stage (None: the pipeline's);
    * ``workers``: threads running this stage (None: the pipeline's ``workers``).
    """

    name: str
    fn: Callable[[Any], Any]
    queue_size: int | None = None
    drop: Literal["block", "oldest", "newest"] | None = None
    fan_out: bool = False
    flush: Callable[[], Iterable[Any]] | None = None
    gate: Any = None
    on_gated: Callable[[Any], Any] | None = None
    on_error: Literal["skip", "raise"] | None = None
    workers: int | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"stage name must be a non-empty string, got {self.name!r}")
        if not callable(self.fn):
            raise TypeError(f"stage {self.name!r}: fn must be callable, got {type(self.fn).__name__}")
        if self.drop is not None or self.queue_size is not None:
            check_policy(self.drop or "block", 1 if self.queue_size is None else self.queue_size)
        if self.on_error not in (None, "skip", "raise"):
            raise ValueError(f"stage {self.name!r}: on_error must be 'skip', 'raise' or None, got {self.on_error!r}")
        if self.workers is not None and int(self.workers) < 1:
            raise ValueError(f"stage {self.name!r}: workers must be >= 1, got {self.workers}")
        if self.gate is not None and not hasattr(self.gate, "is_closed"):
            raise TypeError(f"stage {self.name!r}: gate must be an sdk.pipeline.Gate, got {type(self.gate).__name__}")

    @classmethod
    def of(cls, obj: "Stage | Callable[[Any], Any]") -> "Stage":
        """A Stage as is, or a callable wrapped in one named after it."""
        if isinstance(obj, Stage):
            return obj
        if not callable(obj):
            raise TypeError(f"expected a Stage or a callable, got {type(obj).__name__}")
        name = getattr(obj, "__name__", None) or type(obj).__name__
        return cls(name, obj)


@dataclass
class StageTimer:
    """Per-stage latency samples (``sdk.runtime.LatencyRecorder``, last ``capacity`` calls)
    plus an error count; a lock makes concurrent workers safe."""

    capacity: int = 10_000
    errors: int = 0
    _rec: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        from sdk.runtime import LatencyRecorder  # lazy: sdk.runtime imports onnxruntime

        self._rec = LatencyRecorder(self.capacity)

    def record_ns(self, ns: int) -> None:
        with self._lock:
            self._rec.record_ns(ns)

    def stats(self):
        with self._lock:
            return self._rec.stats()

    def reset(self) -> None:
        with self._lock:
            self._rec.reset()
            self.errors = 0
