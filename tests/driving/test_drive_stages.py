"""The drive stages as StreamingPipeline stages: names, one frame through process(), and a
live run whose dropped frames reach the health monitor through the pipeline's drop events."""
from __future__ import annotations

import numpy as np

from apps.driving_perception.pipeline import DriveOptions, DrivePipeline, FrameResult


def test_stage_chain_and_one_frame():
    with DrivePipeline(None, DriveOptions(lanes=None, annotate=False)) as pipe:
        assert [s.name for s in pipe.stages()] == ["detect", "track", "lanes", "warnings", "annotate"]
        res = pipe.process(np.zeros((180, 320, 3), np.uint8), 0.0, 0)
    assert isinstance(res, FrameResult) and res.index == 0 and res.available and len(res.tracks) == 0


def test_live_drops_are_told_to_the_health_monitor(tmp_path):
    told = []

    def frames():
        for _ in range(30):
            yield np.zeros((90, 160, 3), np.uint8)

    with DrivePipeline(None, DriveOptions(mode="live", lanes=None, annotate=False)) as pipe:
        real = pipe.health.frame_dropped
        pipe.health.frame_dropped = lambda n=1: (told.append(n), real(n))
        slow = pipe._track

        def slow_track(job):     # a slow stage behind the detector: its one-frame queue drops
            import time
            time.sleep(0.02)
            return slow(job)

        pipe._track = slow_track
        summary = pipe.run(frames(), tmp_path, fps=25.0)
    assert summary.processed + summary.dropped == 30 and summary.dropped > 0
    assert sum(told) == summary.dropped
