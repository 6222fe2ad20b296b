"""Lanes: camera calibration, road geometry (vanishing point, bird's-eye transform), lane finding."""
from .calibration import CameraCalibration, Undistorter, calibrate_camera, find_corners
from .detector import LANE_PRESETS, LaneDetector, LaneOptions, LaneResult
from .geometry import CameraFile, RoadGeometry, load_camera_file
from .road import GeometryOptions, GeometryTracker
from .vanishing import VanishingOptions, VanishingPoint, VanishingPointEstimator

__all__ = ["CameraCalibration", "Undistorter", "calibrate_camera", "find_corners",
           "LaneDetector", "LaneOptions", "LaneResult", "LANE_PRESETS",
           "RoadGeometry", "CameraFile", "load_camera_file", "GeometryOptions", "GeometryTracker",
           "VanishingOptions", "VanishingPoint", "VanishingPointEstimator"]
