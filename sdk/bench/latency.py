"""Timing any callable: warm-up, then ``iters`` timed calls -> LatencyStats."""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

import numpy as np

from sdk.runtime.latency_stats import LatencyStats


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr, off when asked or when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", file=sys.stderr, leave=False,
                disable=not enabled or not sys.stderr.isatty())


def measure_latency(fn: Callable[[], Any], warmup: int = 5, iters: int = 100,
                    progress: bool = False, desc: str = "bench") -> LatencyStats:
    """Call ``fn()`` ``warmup`` times untimed, then ``iters`` times timed one by one."""
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        fn()
    samples = np.empty(iters, dtype=np.int64)
    clock = time.perf_counter_ns
    with progress_bar(iters, desc, progress) as bar:
        step = max(1, iters // 100)
        for i in range(iters):
            t0 = clock()
            fn()
            samples[i] = clock() - t0
            if (i + 1) % step == 0:
                bar.update(step)
    return LatencyStats.from_samples(samples / 1e6)
