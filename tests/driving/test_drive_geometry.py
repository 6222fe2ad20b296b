"""Road geometry: the vanishing-point estimator on pinhole renderings of known geometry
(property tests), the bird's-eye transform derived from it, the tracker, the camera file."""
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from apps.driving_perception.lanes import LANE_PRESETS, LaneDetector, LaneOptions
from apps.driving_perception.lanes.geometry import CameraFile, RoadGeometry, load_camera_file
from apps.driving_perception.lanes.road import GeometryOptions, GeometryTracker
from apps.driving_perception.lanes.vanishing import VanishingPointEstimator
from apps.driving_perception.synthetic import pinhole_road

SIZE = (960, 540)
DIAG = math.hypot(*SIZE)

cameras = st.fixed_dictionaries({
    "focal_px": st.floats(450, 1400),          # 38..93 degrees of horizontal field of view
    "pitch_deg": st.floats(-1.0, 6.0),
    "height_m": st.floats(1.0, 1.8),
    "yaw_deg": st.floats(-3.0, 3.0),
    "offset_m": st.floats(-0.8, 0.8),
    "lane_width_m": st.floats(3.0, 4.0),
    "seed": st.integers(0, 1000),
})
PROPERTY = settings(max_examples=20, deadline=None, derandomize=True, database=None,  # the same cases each run
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(cam=cameras)
def test_vp_and_horizon_of_a_pinhole_road(cam):
    frame, (vx, vy) = pinhole_road(SIZE, **cam)
    est = VanishingPointEstimator()
    vp = est.vote(est.segments(frame), SIZE)
    assert vp is not None and vp.inlier_share > 0.5
    assert abs(vp.y - vy) <= 0.005 * DIAG          # the horizon row, within 5.5 px at 960x540
    assert abs(vp.x - vx) <= 0.005 * DIAG


@PROPERTY
@given(cam=cameras)
def test_estimated_geometry_measures_the_lane(cam):
    """Given the true focal length and height, the derived bird's-eye view measures the lane;
    with assumed ones, lateral metres scale by H_assumed / H_true and do not depend on f."""
    frame, _ = pinhole_road(SIZE, dashed=False, **cam)     # solid lines: no dash phase leaves a line unseen
    tracker = GeometryTracker(GeometryOptions(estimate_frames=1))
    est, events = tracker.update(frame)
    assert est is not None and [e["state"] for e in events] == ["provisional", "final"]
    true = RoadGeometry.from_vp(est.vanishing_point, SIZE, focal_px=cam["focal_px"], vp_sigma_px=est.vp_sigma_px,
                                camera_height_m=cam["height_m"], lane_width_m=cam["lane_width_m"])
    r = LaneDetector(LaneOptions(lane_width_m=cam["lane_width_m"]), geometry=true)(frame)
    assert r.state == "ok", r.reason
    assert r.lane_width_m == pytest.approx(cam["lane_width_m"], rel=0.08)
    assert r.offset_m == pytest.approx(cam["offset_m"], abs=0.15)
    assumed = LaneDetector(LaneOptions(lane_width_m=cam["lane_width_m"]), geometry=est)(frame)  # 1.2 m, 60 deg
    assert assumed.state == "ok", assumed.reason
    scale = 1.2 / cam["height_m"]
    assert assumed.lane_width_m == pytest.approx(cam["lane_width_m"] * scale, rel=0.08)
    assert assumed.offset_m == pytest.approx(cam["offset_m"] * scale, abs=0.15)


def test_mirrored_road_flips_the_offset():
    frame, _ = pinhole_road(SIZE, offset_m=0.5, yaw_deg=1.0, dashed=False)
    a, b = LaneDetector()(frame), LaneDetector()(frame[:, ::-1].copy())
    assert a.state == b.state == "ok"
    assert a.offset_m > 0.3 and b.offset_m == pytest.approx(-a.offset_m, abs=0.05)


@pytest.mark.parametrize("name", sorted(LANE_PRESETS))
def test_preset_trapezoids_imply_a_camera_and_round_trip(name):
    size = {"udacity_advanced": (1280, 720), "udacity_p1": (960, 540)}[name]
    g = RoadGeometry.from_quad(LANE_PRESETS[name], size)
    assert 1.1 < g.camera_height_m < 1.3                          # both imply ~1.2 m (the default)
    assert 0.4 * size[1] < g.vanishing_point[1] < 0.62 * size[1]
    assert np.allclose(g.quad(), LANE_PRESETS[name], atol=0.025)   # symmetric about the VP; the presets nearly


def test_tracker_provisional_then_final_then_camera_moved():
    opts = GeometryOptions(estimate_frames=4, estimate_stride=1, recheck_every=2, moved_checks=2)
    tracker = GeometryTracker(opts)
    a, _ = pinhole_road(SIZE, pitch_deg=1.0)
    b, (bx, by) = pinhole_road(SIZE, pitch_deg=6.0)               # the camera tilted down by 5 degrees
    states = []
    for _ in range(4):
        g, ev = tracker.update(a)
        states += [e["state"] for e in ev]
    assert states == ["provisional", "final"] and tracker.state == "tracking"
    assert g.source == "estimated" and g.confidence > 0.8 and g.frames_used == 4
    first_vy = g.vanishing_point[1]
    states = []
    for _ in range(12):
        g, ev = tracker.update(b)
        states += [e["state"] for e in ev]
    assert states[0] == "re-estimating" and "final" in states
    assert abs(g.vanishing_point[1] - by) < 4 and abs(first_vy - by) > 40


def test_no_lines_no_geometry_says_so():
    ld = LaneDetector(LaneOptions(geometry=GeometryOptions(estimate_frames=3)))
    blank = np.full((360, 640, 3), 95, np.uint8)
    results = [ld(blank) for _ in range(3)]
    assert all(r.state == "lost" and "no road geometry yet" in r.reason for r in results)
    assert results[-1].events[0]["state"] == "not found"


def test_camera_file_round_trip_and_scaling(tmp_path, calibration):
    frame, _ = pinhole_road(SIZE)
    g, _ = GeometryTracker(GeometryOptions(estimate_frames=1)).update(frame)
    path = CameraFile(lens=calibration, road=g).save(tmp_path / "camera.json")
    back = load_camera_file(path)
    assert back.road == g and back.lens == calibration
    assert load_camera_file(calibration.save(tmp_path / "lens.json")).road is None    # a `drive calibrate` file
    half = g.scaled((480, 270))
    assert half.vanishing_point == pytest.approx((g.vanishing_point[0] / 2, g.vanishing_point[1] / 2))
    assert np.allclose(half.quad(), g.quad())
    saved = LaneDetector(geometry=g.model_copy(update={"source": "saved"}))(frame)
    assert saved.state == "ok" and saved.geometry.source == "saved"
    (tmp_path / "bad.json").write_text(json.dumps({"road": {"vanishing_point": [1, 2]}}))
    with pytest.raises(ValueError, match="not a camera file"):
        load_camera_file(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        load_camera_file(tmp_path / "missing.json")


def test_lanes_follow_a_camera_that_moves():
    """The camera is tilted down 5 degrees mid-stream: the geometry is re-estimated, the lanes
    come back in the new bird's-eye view and measure the same lane."""
    geo = GeometryOptions(estimate_frames=4, estimate_stride=1, recheck_every=2, moved_checks=2)
    ld = LaneDetector(LaneOptions(geometry=geo))
    before = [ld(pinhole_road(SIZE, pitch_deg=1.0, offset_m=0.3, dashed=False, seed=i)[0]) for i in range(8)]
    after = [ld(pinhole_road(SIZE, pitch_deg=6.0, offset_m=0.3, dashed=False, seed=i)[0]) for i in range(16)]
    states = [e["state"] for r in before + after for e in r.events]
    assert states == ["provisional", "final", "re-estimating", "provisional", "final"]
    assert all(r.state == "ok" for r in before) and all(r.state == "ok" for r in after[-6:])
    assert after[-1].geometry.vanishing_point[1] < before[-1].geometry.vanishing_point[1] - 40
    assert after[-1].offset_m == pytest.approx(before[-1].offset_m, abs=0.1)
    assert after[-1].lane_width_m == pytest.approx(before[-1].lane_width_m, rel=0.05)
