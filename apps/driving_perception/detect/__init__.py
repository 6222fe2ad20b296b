"""Detection: output adapters and the detector."""
from .adapters import ADAPTERS, Adapter, BoxesScoresAdapter, Yolov5Adapter, Yolov8Adapter, YoloxAdapter, make_adapter
from .detector import Detector, DetectorOptions, nms

__all__ = ["ADAPTERS", "Adapter", "YoloxAdapter", "Yolov5Adapter", "Yolov8Adapter", "BoxesScoresAdapter",
           "make_adapter", "Detector", "DetectorOptions", "nms"]
