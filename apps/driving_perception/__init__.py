"""Driving perception: tracked road users, lanes and collision warnings from a camera.

Built only on the public ``sdk`` API. Entry points::

    from apps.driving_perception import DrivePipeline, DriveOptions, resolve_model
    choice = resolve_model("../shared/models/yolox_nano_coco_416.onnx")
    with DrivePipeline(choice.detector()) as pipe:
        pipe.run(open_source("clip.mp4"), "out/")

or ``edgewise drive run clip.mp4 --out out/``. Results are ``sdk.detect.Detections``.
Modules: ``detections`` (the road-user classes), ``detect`` (the detector), ``track`` (ByteTrack),
``lanes`` (calibration, road geometry from the vanishing point, lane finding), ``warnings`` (TTC,
FCW, LDW), ``health`` (monitor), ``annotate``, ``pipeline``, ``sources``, ``model`` (model
resolution, optimized variant), ``cli``, ``demo``.
"""
from .annotate import Annotator
from .detect import Detector, DetectorOptions
from .detections import ROAD_USER_CLASSES, VEHICLE_CLASSES, class_name, with_class_names
from .health import HealthMonitor, HealthOptions, HealthState
from .lanes import (
                    LANE_PRESETS,
                    CameraCalibration,
                    CameraFile,
                    GeometryOptions,
                    GeometryTracker,
                    LaneDetector,
                    LaneOptions,
                    LaneResult,
                    RoadGeometry,
                    Undistorter,
                    VanishingPointEstimator,
                    calibrate_camera,
                    load_camera_file,
)
from .model import ModelChoice, build_optimized, detection_agreement, optimized_choice, resolve_model
from .pipeline import DriveOptions, DrivePipeline, FrameResult, RunSummary
from .sources import frame_fields, offline_frames, open_source
from .track import ByteTrack, TrackerOptions, TrackState
from .warnings import WarningEngine, WarningOptions, WarningState

__all__ = [
    "ROAD_USER_CLASSES", "VEHICLE_CLASSES", "class_name", "with_class_names",
    "Detector", "DetectorOptions",
    "ByteTrack", "TrackerOptions", "TrackState",
    "CameraCalibration", "calibrate_camera", "Undistorter", "LaneDetector", "LaneOptions", "LaneResult", "LANE_PRESETS",
    "RoadGeometry", "CameraFile", "load_camera_file", "GeometryOptions", "GeometryTracker", "VanishingPointEstimator",
    "WarningEngine", "WarningOptions", "WarningState",
    "HealthMonitor", "HealthOptions", "HealthState",
    "Annotator", "DrivePipeline", "DriveOptions", "FrameResult", "RunSummary",
    "open_source", "offline_frames", "frame_fields",
    "ModelChoice", "resolve_model", "build_optimized", "optimized_choice", "detection_agreement",
]
