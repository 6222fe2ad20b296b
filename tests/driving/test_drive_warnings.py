"""Time to collision, FCW and LDW on generated sequences."""
from types import SimpleNamespace

import numpy as np
import pytest

from apps.driving_perception.warnings import WarningEngine, WarningOptions
from sdk.detect import Detections

FPS = 25.0


def lead(scale_px: float, cx=640, bottom=600, tid=3, cls=2) -> Detections:
    w, h = scale_px * 1.5, scale_px
    return Detections(np.array([[cx - w / 2, bottom - h, cx + w / 2, bottom]]), np.array([0.9]),
                      np.array([cls]), np.array([tid]))


def test_approaching_lead_raises_fcw_with_a_sane_ttc():
    eng = WarningEngine(WarningOptions(ttc_threshold_s=2.5))
    d0, v = 40.0, 15.0          # 40 m ahead, closing at 15 m/s: TTC 2.67 s at t=0
    fcw_frame, ttcs = None, []
    for f in range(40):
        t = f / FPS
        st = eng.update(f, t, lead(2000.0 / (d0 - v * t)), 1280)
        if st.ttc_s is not None:
            ttcs.append((f, st.ttc_s, (d0 - v * t) / v))
        if st.events and fcw_frame is None:
            assert st.events[0]["event"] == "FCW" and st.events[0]["frame"] == f and st.events[0]["track_id"] == 3
            fcw_frame = f
    assert fcw_frame is not None and fcw_frame <= 12, f"FCW at frame {fcw_frame}"
    f, est, true = ttcs[-1]
    assert est == pytest.approx(true, rel=0.25)
    assert eng.fcw_active


def test_steady_or_receding_lead_and_off_lane_cars_raise_nothing():
    eng = WarningEngine()
    for f in range(50):
        st = eng.update(f, f / FPS, lead(80.0 - 0.2 * f), 1280)     # receding
        assert not st.events and not st.fcw
    eng = WarningEngine()
    for f in range(50):                                              # approaching, but in another lane
        st = eng.update(f, f / FPS, lead(2000.0 / (40 - 15 * f / FPS), cx=150), 1280)
        assert st.lead_track_id is None and not st.fcw
    eng = WarningEngine()
    for f in range(50):                                              # a pedestrian is not a lead vehicle
        assert eng.update(f, f / FPS, lead(2000.0 / (40 - 15 * f / FPS), cls=0), 1280).lead_track_id is None


def lanes(offset, available=True):
    return SimpleNamespace(available=available, offset_m=offset,
                           in_ego_lane=lambda p: np.ones(len(p), bool))


def test_lane_departure_warning():
    eng = WarningEngine(WarningOptions(ldw_offset_m=0.6, ldw_min_frames=3))
    events = []
    for f, off in enumerate([0.1, 0.2, 0.7, 0.75, 0.8, 0.85, 0.9, 0.3, 0.1]):
        events += eng.update(f, f / FPS, Detections.empty(), 1280, lanes(off)).events
    assert [(e["event"], e["frame"], e["side"]) for e in events] == [("LDW", 4, "right")]
    eng = WarningEngine()
    events = []
    for f in range(10):
        events += eng.update(f, f / FPS, Detections.empty(), 1280, lanes(-0.9)).events
    assert [(e["frame"], e["side"]) for e in events] == [(2, "left")]
    eng = WarningEngine()
    for f in range(10):   # lanes lost: never LDW
        assert not eng.update(f, f / FPS, Detections.empty(), 1280, lanes(-0.9, available=False)).ldw


def test_lead_follows_lane_state_with_a_vp_corridor_fallback():
    from apps.driving_perception.lanes.geometry import RoadGeometry

    geom = RoadGeometry.from_vp((700.0, 400.0), (1280, 720))     # VP right of centre: the road bends there
    eng = WarningEngine()
    tracked = SimpleNamespace(available=True, offset_m=0.0, geometry=geom, reason="",
                              in_ego_lane=lambda p: p[:, 0] < 600)
    lost = SimpleNamespace(available=False, offset_m=None, geometry=geom, reason="too few line pixels")
    car = lead(60.0, cx=400, bottom=560)                            # left of the VP corridor, in the lanes' lane
    st = eng.update(0, 0.0, car, 1280, tracked)
    assert st.lead_track_id == 3 and st.lead_from == "lanes" and st.ldw_available and not st.events
    st = eng.update(1, 0.04, car, 1280, lost)
    assert st.lead_from == "vp corridor" and not st.ldw_available and st.lead_track_id is None
    assert st.events == [{"event": "lane_features", "frame": 1, "t": 0.04, "lead_from": "vp corridor",
                          "ldw": "off", "reason": "too few line pixels"}]
    half = float(geom.half_width_px(560))                           # 1.85 m x 160 / 1.2 = 247 px
    st = eng.update(2, 0.08, lead(60.0, cx=700 + half - 10, bottom=560), 1280, lost)
    assert st.lead_track_id == 3 and not st.events
    st = eng.update(3, 0.12, lead(60.0, cx=700 + half + 10, bottom=560), 1280, lost)
    assert st.lead_track_id is None
    st = eng.update(4, 0.16, car, 1280, None)                       # no lane finding at all: frame band
    assert st.lead_from == "frame corridor"
