"""Detection: the detector (letterbox, engine, the SDK's decoder, source-pixel boxes)."""
from .detector import Detector, DetectorOptions

__all__ = ["Detector", "DetectorOptions"]
