"""Lanes: camera calibration and lane finding."""
from .calibration import CameraCalibration, Undistorter, calibrate_camera, find_corners
from .detector import LANE_PRESETS, LaneDetector, LaneOptions, LaneResult

__all__ = ["CameraCalibration", "Undistorter", "calibrate_camera", "find_corners",
           "LaneDetector", "LaneOptions", "LaneResult", "LANE_PRESETS"]
