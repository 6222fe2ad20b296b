"""A named pipeline stage and its latency recorder."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Stage", "StageTimer"]


@dataclass
class Stage:
    """One step of a pipeline: ``fn(item) -> item``, with a name for stats and errors."""

    name: str
    fn: Callable[[Any], Any]

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"stage name must be a non-empty string, got {self.name!r}")
        if not callable(self.fn):
            raise TypeError(f"stage {self.name!r}: fn must be callable, got {type(self.fn).__name__}")

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
