"""One item at a time: stages run in order, with per-stage latency and named failures."""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from sdk.errors import PipelineError
from sdk.pipeline.stage import Stage, StageTimer

__all__ = ["Pipeline"]


class Pipeline:
    """``Pipeline([Stage("pre", f1), Stage("model", f2)])(x)`` runs ``f2(f1(x))``.

    Each stage's latency is recorded (``stats``: stage name -> ``sdk.runtime.LatencyStats``);
    an exception in a stage becomes :class:`~sdk.errors.PipelineError` naming the stage,
    with the original exception as ``__cause__``. Plain callables are accepted as stages
    and named after ``__name__``. Stage names must be unique.
    """

    def __init__(self, stages: Sequence[Stage | Callable[[Any], Any]]):
        self.stages: list[Stage] = [Stage.of(s) for s in stages]
        names = [s.name for s in self.stages]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"stage names must be unique, got duplicates {dup}")
        self._timers = {s.name: StageTimer() for s in self.stages}
        self._total = StageTimer()

    def __call__(self, item: Any) -> Any:
        t_start = time.perf_counter_ns()
        for stage in self.stages:
            t0 = time.perf_counter_ns()
            try:
                item = stage.fn(item)
            except Exception as exc:
                self._timers[stage.name].errors += 1
                raise PipelineError(
                    f"stage {stage.name!r} failed: {type(exc).__name__}: {exc}"
                ) from exc
            self._timers[stage.name].record_ns(time.perf_counter_ns() - t0)
        self._total.record_ns(time.perf_counter_ns() - t_start)
        return item

    @property
    def stats(self) -> dict:
        """Stage name -> LatencyStats (successful calls only)."""
        return {name: t.stats() for name, t in self._timers.items()}

    @property
    def total_stats(self):
        """LatencyStats of whole successful runs through all stages."""
        return self._total.stats()

    @property
    def errors(self) -> dict[str, int]:
        return {name: t.errors for name, t in self._timers.items()}

    def reset_stats(self) -> None:
        for t in (*self._timers.values(), self._total):
            t.reset()

    def __repr__(self) -> str:
        return f"Pipeline({[s.name for s in self.stages]})"
