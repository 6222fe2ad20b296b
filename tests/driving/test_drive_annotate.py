"""The annotator never draws stale results when perception is unavailable."""
import numpy as np

from apps.driving_perception.annotate import Annotator
from apps.driving_perception.pipeline import FrameResult
from apps.driving_perception.warnings import WarningState
from sdk.detect import Detections


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


def test_horizon_vp_and_fallback_corridor_are_drawn():
    from types import SimpleNamespace

    from apps.driving_perception.lanes.geometry import RoadGeometry

    geom = RoadGeometry.from_vp((320.0, 200.0), (640, 360), source="estimated", confidence=0.9)
    lost = SimpleNamespace(available=False, polygon=None, state="lost", geometry=geom, reason="too few line pixels")
    res = FrameResult(0, 0.0, Detections.empty(), lost, WarningState(lead_from="vp corridor"), "OK", [], True, 25.0)
    img = Annotator()(np.full((360, 640, 3), 50, np.uint8), res)
    cyan = (img[..., 0] > 200) & (img[..., 1] > 200) & (img[..., 2] < 40)
    assert cyan[200].sum() > 250 and cyan[150].sum() == 0       # the dashed horizon on the VP row
    orange = (img[..., 2] > 200) & (img[..., 1] > 120) & (img[..., 1] < 200) & (img[..., 0] < 40)
    x = int(round(320 + geom.half_width_px(359)))
    assert orange[355:360, x - 6:x + 6].any() and not orange[355:360, 20:40].any()   # the corridor's right edge
