"""The annotator never draws stale results when perception is unavailable."""
import numpy as np

from apps.driving_perception.annotate import Annotator
from apps.driving_perception.detections import Detections
from apps.driving_perception.pipeline import FrameResult
from apps.driving_perception.warnings import WarningState


def _result(available: bool, health: str) -> FrameResult:
    tracks = Detections(np.array([[100, 100, 200, 180]], float), np.array([0.9]), np.array([2]), np.array([4]))
    return FrameResult(0, 0.0, tracks, None, WarningState(lead_track_id=4, ttc_s=1.2, fcw=True), health,
                       [] if available else ["no frame for 1.20 s (timeout 1.0 s)"], available, 25.0)


def test_boxes_drawn_only_when_available():
    frame = np.full((360, 640, 3), 50, np.uint8)
    ok = Annotator()(frame, _result(True, "OK"))
    assert (frame == 50).all(), "the input frame is not modified with copy=True"
    assert (ok[100:181, 100] != 50).any()                       # box edge drawn
    assert tuple(ok[5, 320]) == (60, 170, 60)                   # green banner
    bad = Annotator()(frame, _result(False, "FAILED"))
    assert (bad[150:181, 95:205] == 50).all()                   # no stale box, no FCW text there
    assert tuple(bad[5, 320]) == (0, 0, 220)                    # red banner
