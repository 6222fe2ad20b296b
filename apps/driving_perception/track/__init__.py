"""Multi-object tracking."""
from .bytetrack import ByteTrack, KalmanBoxFilter, Track, TrackerOptions, TrackState

__all__ = ["ByteTrack", "TrackerOptions", "TrackState", "Track", "KalmanBoxFilter"]
