"""End to end: `edgewise drive run` / `drive calibrate`, live drops, unavailable perception."""
import json
import time

import cv2
import numpy as np
import pytest

from apps.driving_perception.detect import Detector, DetectorOptions
from apps.driving_perception.pipeline import DriveOptions, DrivePipeline
from apps.driving_perception.synthetic import write_clip
from sdk.cli.main import main

from .conftest import FakeEngine, yolox_raw


def _frames(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def synthetic_clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "road.mp4", n_frames=40, size=(640, 360))


def test_cli_run_on_real_clip_writes_all_outputs(driving_dir, yolox_path, tmp_path, capsys):
    clip = driving_dir / "vehicle_detection" / "test_video.mp4"
    rc = main(["drive", "run", str(clip), "--out", str(tmp_path), "--model", str(yolox_path), "--fp32",
               "--max-frames", "12", "--json"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["processed"] == 12 and info["dropped"] == 0 and not info["optimized"]
    assert _frames(tmp_path / "annotated.mp4") == 12
    cap = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (1280, 720)
    cap.release()
    lat = json.loads((tmp_path / "latency.json").read_text())
    assert {"decode", "pre", "model", "post", "track", "lanes", "warn", "annotate", "encode"} <= set(lat["stages_ms"])
    assert lat["stages_ms"]["model"]["count"] == 12
    frames = _jsonl(tmp_path / "frames.jsonl")
    assert [f["frame"] for f in frames] == list(range(12))
    cars = [t for f in frames[3:] for t in f["tracks"] if t["class"] == "car"]
    assert len({t["track_id"] for t in cars}) >= 2 and all(t["track_id"] for t in cars)
    for e in _jsonl(tmp_path / "events.jsonl"):
        assert {"event", "frame", "t"} <= set(e)


@pytest.mark.slow
def test_optimized_variant_is_built_once_cached_and_measured(driving_dir, yolox_path, tmp_path, capsys):
    from apps.driving_perception.model import edgewise_home, sha256_of
    from sdk.bundle import load_bundle

    clip = driving_dir / "vehicle_detection" / "test_video.mp4"
    args = ["drive", "run", str(clip), "--model", str(yolox_path), "--max-frames", "3", "--no-video", "--json"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["optimized"]
    cache = edgewise_home() / "driving" / sha256_of(yolox_path)
    b = load_bundle(cache)
    m = b.manifest.metrics
    assert m["detection_agreement_f1"] >= 0.9 and m["agreement_reference_boxes"] > 0
    assert m["latency_p50_ms_fp32"] > 0 and m["latency_p50_ms_optimized"] > 0
    assert b.manifest.extra["detector"]["adapter"] == "yolox"
    assert b.manifest.provenance.parent_sha256 == sha256_of(yolox_path)
    stamp = (cache / "manifest.json").stat().st_mtime_ns
    assert main(args + ["--out", str(tmp_path / "b")]) == 0       # second run: from the cache
    assert (cache / "manifest.json").stat().st_mtime_ns == stamp


def test_cli_calibrate(driving_dir, tmp_path, capsys):
    out = tmp_path / "cal.json"
    assert main(["drive", "calibrate", str(driving_dir / "advanced_lane_lines" / "camera_cal"),
                 "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["rms_px"] < 1.5 and json.loads(out.read_text())["rms_px"] == res["rms_px"]


def test_cli_bad_input_exit_codes(tmp_path, capsys):
    assert main(["drive", "run", str(tmp_path / "missing.mp4"), "--out", str(tmp_path), "--fp32",
                 "--model", str(tmp_path / "nope.onnx")]) == 2
    assert main(["drive", "calibrate", str(tmp_path), "--out", str(tmp_path / "c.json")]) == 2
    assert "no images" in capsys.readouterr().err


def _fake_detector(fail_from=None, delay_s=0.0):
    good = yolox_raw([(200, 150, 60, 40)], [0.9], [2], [0.9])
    bad = good.copy()
    bad[0, 5, 5] = np.nan

    def outputs(n):
        if delay_s:
            time.sleep(delay_s)
        return [bad if fail_from is not None and n >= fail_from else good]

    return Detector(FakeEngine(outputs), DetectorOptions())


def test_nan_output_makes_perception_unavailable(synthetic_clip, tmp_path):
    from sdk.pipeline import VideoSource

    with DrivePipeline(_fake_detector(fail_from=10), DriveOptions()) as pipe:
        summary = pipe.run(VideoSource(synthetic_clip), tmp_path, max_frames=20)
    assert summary.processed == 20 and summary.health_final == "FAILED"
    frames = _jsonl(tmp_path / "frames.jsonl")
    assert frames[8]["perception"] == "available" and frames[8]["tracks"][0]["track_id"] == 1
    for f in frames[9:]:                       # frame index 9 is the 10th model call
        assert f["perception"] == "perception unavailable" and "tracks" not in f
        assert "invalid model output" in f["reasons"][0]
    health = [e for e in _jsonl(tmp_path / "events.jsonl") if e["event"] == "health"]
    assert [(e["frame"], e["to"]) for e in health] == [(9, "FAILED")]
    assert _frames(tmp_path / "annotated.mp4") == 20


def test_offline_synthetic_run_reports_lanes_and_lane_departure(synthetic_clip, tmp_path):
    from sdk.pipeline import VideoSource

    with DrivePipeline(None, DriveOptions()) as pipe:
        summary = pipe.run(VideoSource(synthetic_clip), tmp_path)
    assert summary.processed == 40 and summary.health_final == "OK"
    frames = _jsonl(tmp_path / "frames.jsonl")
    ok = [f for f in frames if f["lanes"] and f["lanes"]["state"] == "ok"]
    assert len(ok) >= 30
    assert any(f["lanes"]["offset_m"] > 0.6 for f in ok)   # the clip drifts right of centre, then left
    assert any(f["lanes"]["offset_m"] < -0.6 for f in ok)
    ldw = [e["side"] for e in _jsonl(tmp_path / "events.jsonl") if e["event"] == "LDW"]
    assert ldw == ["right", "left"]


def test_live_mode_drops_late_frames_and_degrades(synthetic_clip, tmp_path):
    from sdk.pipeline import VideoSource

    opts = DriveOptions(mode="live", lanes=None, annotate=False)
    with DrivePipeline(_fake_detector(delay_s=0.1), opts) as pipe:   # 10 FPS model on a 25 FPS clip
        summary = pipe.run(VideoSource(synthetic_clip), tmp_path)
    assert summary.dropped > 10
    assert summary.processed + summary.dropped == 40
    health = [e for e in _jsonl(tmp_path / "events.jsonl") if e["event"] == "health"]
    assert health and health[0]["to"] == "DEGRADED"
    assert json.loads((tmp_path / "latency.json").read_text())["dropped"] == summary.dropped


def test_cli_image_folder_and_live_clip(driving_dir, yolox_path, tmp_path, capsys):
    folder = driving_dir / "advanced_lane_lines" / "test_images"
    assert main(["drive", "run", str(folder), "--out", str(tmp_path / "f"), "--model", str(yolox_path), "--fp32",
                 "--no-video", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["processed"] == 8 and "video" not in info["files"]
    clip = driving_dir / "vehicle_detection" / "test_video.mp4"
    assert main(["drive", "run", str(clip), "--out", str(tmp_path / "l"), "--model", str(yolox_path), "--fp32",
                 "--live", "--max-frames", "12", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["processed"] + info["dropped"] == 12 and info["processed"] >= 1
    assert json.loads((tmp_path / "l" / "latency.json").read_text())["mode"] == "live"


def test_live_stalled_camera_fails_then_recovers(tmp_path):
    """A source that stops delivering for 1.5 s: the watchdog turns the monitor FAILED
    (timeout 1 s) while no frame comes, and the monitor recovers with hysteresis after."""
    from apps.driving_perception.health import HealthOptions

    rng = np.random.default_rng(0)

    def camera():
        for i in range(45):
            if i == 5:
                time.sleep(1.5)
            time.sleep(0.02)
            yield rng.integers(0, 255, (180, 320, 3), dtype=np.uint8)

    opts = DriveOptions(mode="live", lanes=None, annotate=False,
                        health=HealthOptions(frame_timeout_s=1.0, min_fps=0.0, max_drop_share=1.0,
                                             max_late_share=1.0, recover_after=10))
    with DrivePipeline(_fake_detector(), opts) as pipe:
        summary = pipe.run(camera(), tmp_path, fps=25.0)
    health = [e for e in _jsonl(tmp_path / "events.jsonl") if e["event"] == "health"]
    assert [e["to"] for e in health] == ["FAILED", "OK"], health
    assert "no frame" in health[0]["reasons"][0]
    assert summary.health_final == "OK"
    frames = _jsonl(tmp_path / "frames.jsonl")
    first_after = next(f for f in frames if f["t"] > health[0]["t"])
    assert first_after["perception"] == "perception unavailable"
