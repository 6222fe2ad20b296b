"""Calibration on the real chessboards, undistortion, lane offset sign and curvature."""
import cv2
import numpy as np
import pytest

from apps.driving_perception.lanes import CameraCalibration, LaneDetector, LaneOptions, Undistorter, find_corners
from apps.driving_perception.synthetic import road_frame

RMS_BOUND_PX = 1.5
ADVANCED = LaneOptions.preset("udacity_advanced")


def test_calibration_rms_below_bound_and_file_roundtrip(calibration, tmp_path):
    assert calibration.rms_px < RMS_BOUND_PX
    assert len(calibration.images_used) >= 15 and calibration.image_size == (1280, 720)
    k = np.array(calibration.camera_matrix)
    assert 900 < k[0, 0] < 1400 and abs(k[0, 2] - 640) < 60
    path = calibration.save(tmp_path / "cal.json")
    again = CameraCalibration.load(path)
    assert again == calibration
    (tmp_path / "bad.json").write_text('{"rms": 1}')
    with pytest.raises(ValueError, match="not a calibration file"):
        CameraCalibration.load(tmp_path / "bad.json")


def _row_straightness(corners: np.ndarray, pattern=(9, 6)) -> float:
    """Mean distance (px) of each chessboard row's corners from its fitted straight line."""
    pts = corners.reshape(pattern[1], pattern[0], 2)
    res = []
    for row in pts:
        vx, vy, x0, y0 = cv2.fitLine(row.astype(np.float32), cv2.DIST_L2, 0, 0.01, 0.01).ravel()
        res.append(np.abs((row[:, 0] - x0) * vy - (row[:, 1] - y0) * vx).mean())
    return float(np.mean(res))


def test_undistortion_straightens_the_chessboard(calibration, driving_dir):
    img = cv2.imread(str(driving_dir / "advanced_lane_lines" / "camera_cal" / "calibration2.jpg"))
    und = Undistorter(calibration)(img)
    before = find_corners(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), (9, 6))
    after = find_corners(cv2.cvtColor(und, cv2.COLOR_BGR2GRAY), (9, 6))
    assert before is not None and after is not None
    assert _row_straightness(after) < 0.5 * _row_straightness(before)
    # a frame of another size uses the scaled camera matrix
    small = Undistorter(calibration)(cv2.resize(img, (640, 360)))
    assert small.shape == (360, 640, 3)


@pytest.mark.parametrize("offset,radius", [(0.5, None), (-0.5, None), (0.0, 500.0), (-0.8, 800.0), (0.3, -800.0)])
def test_synthetic_road_offset_sign_and_curvature(offset, radius):
    r = LaneDetector(ADVANCED)(road_frame(offset, radius, (640, 360)))   # the geometry it was drawn with
    assert r.state == "ok"
    assert r.offset_m == pytest.approx(offset, abs=0.1)          # positive = right of centre
    assert r.lane_width_m == pytest.approx(3.7, abs=0.2)
    if radius is not None:
        assert r.curvature_m == pytest.approx(abs(radius), rel=0.35)
    else:
        assert r.curvature_m > 5000


CURVED = ["test2.jpg", "test3.jpg", "test6.jpg"]


@pytest.mark.parametrize("name", CURVED)
def test_real_curved_frames_curvature_and_offset(name, advanced_images, calibration):
    img = cv2.imread(str(advanced_images / name))
    r = LaneDetector(ADVANCED, calibration=calibration)(img)
    assert r.state == "ok", r.reason
    assert 200 < r.curvature_m < 3000                          # hundreds of metres to a few km
    assert -1.0 < r.offset_m < 0.0                              # this car drives left of its lane centre
    assert 3.0 < r.lane_width_m < 4.2
    flipped = LaneDetector(ADVANCED, calibration=calibration)(cv2.flip(img, 1))
    assert flipped.state == "ok" and flipped.offset_m > 0      # the mirror image is right of centre
    assert flipped.offset_m == pytest.approx(-r.offset_m, abs=0.1)


def test_real_straight_frame_is_nearly_straight(advanced_images, calibration):
    r = LaneDetector(ADVANCED, calibration=calibration)(cv2.imread(str(advanced_images / "straight_lines1.jpg")))
    curved = LaneDetector(ADVANCED, calibration=calibration)(cv2.imread(str(advanced_images / "test2.jpg")))
    assert r.curvature_m > 3000 > curved.curvature_m
    assert abs(r.offset_m) < 0.3


def test_lanes_lost_after_n_bad_frames_and_recover():
    opts = LaneOptions.preset("udacity_advanced", lost_after=4)
    ld = LaneDetector(opts)
    good = road_frame(0.2, None, (640, 360))
    blank = np.full((360, 640, 3), 95, np.uint8)
    assert ld(good).state == "ok"
    states = [ld(blank).state for _ in range(6)]
    assert states == ["coasting"] * 3 + ["lost"] * 3
    lost = ld(blank)
    assert not lost.available and lost.offset_m is None
    assert not lost.in_ego_lane(np.array([[320, 300]])).any()
    back = ld(good)
    assert back.state == "ok" and back.in_ego_lane(np.array([[320, 340], [20, 340]])).tolist() == [True, False]


def test_lane_preset_and_options_validation():
    assert LaneOptions.preset("udacity_p1").src[0][1] == pytest.approx(350 / 540)
    with pytest.raises(ValueError, match="unknown lane preset"):
        LaneOptions.preset("nope")
    with pytest.raises(ValueError):
        LaneOptions(smoothing=0.0)
