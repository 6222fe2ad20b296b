"""Raw frames for detector compression: loading (videos too), the held-out split, calibration
at each candidate's input size, and the rectangular shapes derived from the frames."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sdk.compress.frames import Frame, FrameCalibration, frame_input_shapes, load_frames, model_input_hw, split_frames
from sdk.errors import DecodeError


def _video(path, n=12, size=(160, 90)):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    for i in range(n):
        img = np.full((size[1], size[0], 3), 20 * i % 255, np.uint8)
        cv2.putText(img, str(i), (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 2)
        w.write(img)
    w.release()
    return path


def test_load_frames_samples_videos_and_reads_images(tmp_path):
    _video(tmp_path / "clip.mp4")
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((90, 160, 3), np.uint8))
    frames = load_frames([tmp_path], video_frames=5)
    from_video = [f for f in frames if f.source.endswith("clip.mp4")]
    assert len(from_video) == 5 and len(frames) == 6
    assert sorted(f.index for f in from_video) == [0, 2, 5, 8, 11]     # evenly spaced, first and last
    assert all(f.image.shape == (90, 160, 3) and f.image.dtype == np.uint8 for f in frames)


def test_load_frames_names_the_bad_file(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DecodeError, match="broken.jpg"):
        load_frames([tmp_path])
    with pytest.raises(ValueError, match="expected an image"):
        load_frames([tmp_path / "notes.txt"]) if (tmp_path / "notes.txt").write_text("x") else None
    with pytest.raises(FileNotFoundError):
        load_frames([tmp_path / "missing"])


def _frames(sources, per_source):
    img = np.zeros((9, 16, 3), np.uint8)
    return [Frame(img, f"s{s}", i) for s in range(sources) for i in range(per_source)]


def test_split_holds_out_whole_sources_when_there_are_many():
    search, held = split_frames(_frames(10, 1), 0.4)
    assert {f.source for f in search}.isdisjoint({f.source for f in held})
    assert len(held) == 5 and len(search) == 5                # every 2nd source (round(1/0.4) = 2)


def test_split_holds_out_the_tail_of_each_video():
    search, held = split_frames(_frames(2, 10), 0.3)
    for s in ("s0", "s1"):
        last_search = max(f.index for f in search if f.source == s)
        first_held = min(f.index for f in held if f.source == s)
        assert last_search < first_held                       # never interleaved neighbours
    assert len(held) == 6


def test_split_refuses_what_cannot_be_split():
    with pytest.raises(ValueError, match="cannot hold out"):
        split_frames(_frames(1, 1), 0.4)
    with pytest.raises(ValueError, match="fraction"):
        split_frames(_frames(2, 5), 1.5)


def test_frame_input_shapes_from_the_aspect_ratio():
    wide = [np.zeros((720, 1280, 3), np.uint8), np.zeros((540, 960, 3), np.uint8)]
    assert frame_input_shapes(wide, (416, 416)) == [[1, 3, 256, 416]]      # 416 * 9/16 = 234 -> 256
    assert frame_input_shapes([np.zeros((1280, 720, 3), np.uint8)], (416, 416)) == [[1, 3, 416, 256]]
    assert frame_input_shapes([np.zeros((500, 500, 3), np.uint8)], (416, 416)) == []
    # 4:3 and 16:9 mixed: the tallest frame decides, so every frame fits
    assert frame_input_shapes([np.zeros((480, 640, 3), np.uint8)] + wide, (416, 416)) == [[1, 3, 320, 416]]


def test_frame_calibration_feeds_each_model_at_its_own_size(tmp_path):
    from onnx import TensorProto, helper, save

    def model(h, w, name):
        g = helper.make_graph([helper.make_node("Identity", ["images"], ["y"])], "m",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, h, w])])
        p = tmp_path / name
        save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
        return p

    sq, rect = model(64, 64, "sq.onnx"), model(32, 64, "rect.onnx")
    assert model_input_hw(rect) == (32, 64)
    frames = [np.full((90, 160, 3), 200, np.uint8)] * 3
    cal = FrameCalibration(frames, (64, 64))
    a, b = cal.for_model(sq), cal.for_model(rect)
    assert len(a) == 3 and a[0]["images"].shape == (1, 3, 64, 64)
    assert b[0]["images"].shape == (1, 3, 32, 64)
    assert a[0]["images"][0, 0, -1, 0] == 114.0            # letterbox padding (below the frame) on the square input
    assert b[0]["images"][0, 0, 16, 32] == 200.0
    assert len(cal) == 3
