"""SOURCE argument -> SDK source; frames and their timeline."""
import numpy as np
import pytest

from apps.driving_perception.sources import frame_fields, offline_frames, open_source
from apps.driving_perception.synthetic import write_clip
from sdk.errors import PipelineError


def test_open_source_maps_every_kind(tmp_path):
    from sdk.pipeline import CameraSource, ImageFolderSource, VideoSource

    assert isinstance(open_source("0"), CameraSource)            # opened only when iterated
    assert isinstance(open_source("rtsp://127.0.0.1:8554/cam"), CameraSource)
    assert isinstance(open_source(tmp_path), ImageFolderSource)
    clip = write_clip(tmp_path / "c.mp4", n_frames=5, size=(320, 180))
    assert isinstance(open_source(clip), VideoSource)
    with pytest.raises(FileNotFoundError, match="neither a camera index"):
        open_source(tmp_path / "missing.mp4")


def test_offline_frames_timeline_and_limit(tmp_path):
    from sdk.pipeline import VideoSource

    clip = write_clip(tmp_path / "c.mp4", n_frames=6, size=(320, 180), fps=20.0)
    got = list(offline_frames(VideoSource(clip), fps=20.0, max_frames=4))
    assert [g[0] for g in got] == [0, 1, 2, 3]
    assert [round(g[2], 3) for g in got] == [0.0, 0.05, 0.1, 0.15]
    assert got[0][1].shape == (180, 320, 3) and all(g[3] >= 0 for g in got)
    arr = np.zeros((4, 4, 3), np.uint8)
    assert frame_fields(arr, 7, 10.0)[::2] == (7, 0.7)
    with pytest.raises(PipelineError, match="no image array"):
        frame_fields(object(), 0, 10.0)
