"""Sources and sinks on files written in the test: images, video, WAV, JSONL."""
from __future__ import annotations

import json
import struct
import time

import cv2
import numpy as np
import pytest

from sdk.errors import DecodeError, PipelineError
from sdk.pipeline import (
    AudioBlock,
    CameraSource,
    ImageFolderSource,
    JsonlSink,
    StreamingPipeline,
    VideoSource,
    VideoWriterSink,
    WavSink,
    WavSource,
    read_wav,
    write_wav,
)


def _colour_frames(n, h=48, w=64):
    out = []
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[:, :, i % 3] = 40 + 15 * i
        out.append(img)
    return out


def test_image_folder_skips_corrupt_files(tmp_path, caplog):
    for i, img in enumerate(_colour_frames(3)):
        assert cv2.imwrite(str(tmp_path / f"img{i}.png"), img)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    src = ImageFolderSource(tmp_path)
    got = list(src)
    assert [f.index for f in got] == [0, 1, 2]
    assert [f.meta["path"].rsplit("/", 1)[-1] for f in got] == ["img0.png", "img1.png", "img2.png"]
    assert got[1].data.shape == (48, 64, 3) and got[1].data[0, 0, 1] == 55
    assert src.skipped == 2 and {p.name for p in src.skipped_paths} == {"broken.jpg", "empty.png"}
    assert "broken.jpg" in caplog.text
    with pytest.raises(FileNotFoundError):
        ImageFolderSource(tmp_path / "nope")


def test_image_folder_recursive(tmp_path):
    (tmp_path / "sub").mkdir()
    cv2.imwrite(str(tmp_path / "a.png"), _colour_frames(1)[0])
    cv2.imwrite(str(tmp_path / "sub" / "b.PNG"), _colour_frames(1)[0])
    assert len(list(ImageFolderSource(tmp_path))) == 1
    assert len(list(ImageFolderSource(tmp_path, recursive=True))) == 2


@pytest.fixture
def video(tmp_path):
    path = tmp_path / "clip.mp4"
    with VideoWriterSink(path, fps=50) as sink:
        for img in _colour_frames(12):
            sink.write(img)
    assert sink.frames == 12 and path.stat().st_size > 0
    return path


def test_video_source_reads_back_written_video(video):
    src = VideoSource(video)
    assert src.size == (48, 64) and src.fps == pytest.approx(50)
    frames = list(src)
    assert len(frames) == 12 and [f.index for f in frames] == list(range(12))
    # lossy codec: the dominant channel survives
    for i, f in enumerate(frames):
        assert int(np.argmax(f.data.reshape(-1, 3).mean(0))) == i % 3
    assert frames[3].meta["pos_ms"] == pytest.approx(60.0)


def test_video_source_realtime_paces_by_fps(video):
    t0 = time.monotonic()
    n = sum(1 for _ in VideoSource(video, realtime=True))
    assert n == 12
    assert time.monotonic() - t0 >= 11 / 50 - 0.005      # a lower bound only (never flaky)


def test_video_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        VideoSource(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(DecodeError, match="could not open"):
        VideoSource(bad)


def test_camera_source_from_url_and_missing_camera(video):
    frames = list(CameraSource(str(video)))
    assert len(frames) == 12
    with pytest.raises(PipelineError, match="could not open camera"):
        next(iter(CameraSource(str(video) + ".missing")))


def test_video_writer_refuses_to_write_nothing(tmp_path):
    with pytest.raises(PipelineError, match="could not open"):
        VideoWriterSink(tmp_path, fps=10, size=(48, 64))     # a directory is not a file
    with VideoWriterSink(tmp_path / "g.mp4", fps=10) as s:
        s.write(np.zeros((48, 64), np.uint8))                  # gray -> BGR
        s.write(np.zeros((96, 128, 3), np.uint8))              # resized to the first size
        with pytest.raises(PipelineError, match="HxWx3"):
            s.write(np.zeros(5))
    assert s.frames == 2


def test_video_file_through_streaming_pipeline(video, tmp_path):
    out = tmp_path / "out.mp4"
    st = StreamingPipeline(VideoSource(video), [lambda f: 255 - f.data],
                           VideoWriterSink(out, fps=50), drop="block").run()
    assert st.processed == 12 and st.source_error is None
    assert len(list(VideoSource(out))) == 12


# --- WAV ---------------------------------------------------------------------------------
def _tone(n=16000, sr=16000, f=440.0):
    return (0.5 * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


def test_wav_source_pcm16_blocks_and_mixdown(tmp_path):
    x = _tone(5000)
    stereo = np.stack([x, -0.5 * x], 1)
    path = write_wav(tmp_path / "s.wav", stereo, 16000)
    src = WavSource(path, block_size=1024)
    assert (src.sample_rate, src.info.channels, src.info.frames) == (16000, 2, 5000)
    blocks = list(src)
    assert [len(b.samples) for b in blocks] == [1024] * 4 + [904]
    assert all(isinstance(b, AudioBlock) and b.samples.ndim == 1 for b in blocks)
    mono = np.concatenate([b.samples for b in blocks])
    assert np.abs(mono - 0.25 * x).max() < 2 / 32767
    both = np.concatenate([b.samples for b in WavSource(path, 999, mono=False)])
    assert both.shape == (5000, 2) and np.abs(both - stereo).max() < 1 / 32767


def _float_wav(path, x, sr, extensible=False):
    data = x.astype("<f4").tobytes()
    if extensible:
        guid = struct.pack("<H", 3) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, sr, sr * 4, 4, 32, 22, 32, 4) + guid
    else:
        fmt = struct.pack("<HHIIHH", 3, 1, sr, sr * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 4) + b"INFO"            # an extra chunk to skip
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


@pytest.mark.parametrize("extensible", [False, True])
def test_wav_float32(tmp_path, extensible):
    x = _tone(3000, 8000)
    _float_wav(tmp_path / "f.wav", x, 8000, extensible)
    y, sr = read_wav(tmp_path / "f.wav")
    assert sr == 8000 and np.array_equal(x, y)


def test_wav_truncated_and_corrupt(tmp_path):
    path = write_wav(tmp_path / "t.wav", _tone(8000), 16000)
    data = path.read_bytes()
    (tmp_path / "trunc.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="truncated"):
        WavSource(tmp_path / "trunc.wav")
    (tmp_path / "head.wav").write_bytes(data[:30])
    with pytest.raises(DecodeError, match="truncated WAV inside the fmt chunk"):
        WavSource(tmp_path / "head.wav")
    (tmp_path / "nodata.wav").write_bytes(data[:36])
    with pytest.raises(DecodeError, match="truncated or corrupt WAV: expected a data chunk"):
        WavSource(tmp_path / "nodata.wav")
    (tmp_path / "junk.wav").write_bytes(b"ID3\x03" + bytes(100))
    with pytest.raises(DecodeError, match="not a WAV"):
        read_wav(tmp_path / "junk.wav")
    with pytest.raises(FileNotFoundError):
        WavSource(tmp_path / "missing.wav")


def test_wav_source_realtime_paces(tmp_path):
    path = write_wav(tmp_path / "r.wav", _tone(1600), 16000)     # 0.1 s
    t0 = time.monotonic()
    assert len(list(WavSource(path, block_size=400, realtime=True))) == 4
    assert time.monotonic() - t0 >= 0.095


def test_wav_sink_round_trip_via_pipeline(tmp_path):
    src = write_wav(tmp_path / "in.wav", _tone(4000), 16000)
    out = tmp_path / "out.wav"
    st = StreamingPipeline(WavSource(src, 512), [lambda b: b], WavSink(out, 16000),
                           drop="block").run()
    assert st.processed == 8
    y, sr = read_wav(out)
    assert sr == 16000 and np.abs(y - _tone(4000)).max() < 2 / 32767
    with pytest.raises(PipelineError, match="8000 Hz"):
        WavSink(tmp_path / "x.wav", 16000).write(AudioBlock(0, 0.0, np.zeros(4), 8000))


def test_jsonl_sink_appends_and_flushes(tmp_path):
    path = tmp_path / "log.jsonl"
    sink = JsonlSink(path)
    sink.write({"frame": 1, "boxes": np.array([[1.5, 2, 3, 4]]), "score": np.float32(0.5)})
    assert json.loads(path.read_text())["boxes"] == [[1.5, 2, 3, 4]]    # flushed already
    sink.close()
    with JsonlSink(path) as s2:
        s2.write(AudioBlock(3, 1.0, np.zeros(2, np.float32), 16000))
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["index"] == 3
    with pytest.raises(PipelineError, match="closed"):
        sink.write({})
