"""Health tells the truth about the source (issue 14 item 6) and the run says which road
geometry it used (issue 15): events, exit codes, camera.json reused by --calibration."""
import json

import cv2
import numpy as np
import pytest

from apps.driving_perception.pipeline import DriveOptions, DrivePipeline
from apps.driving_perception.synthetic import pinhole_road
from sdk.cli.main import main
from sdk.pipeline import VideoSource


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _health(out):
    return [e for e in _jsonl(out / "events.jsonl") if e["event"] == "health"]


def _write(path, frames, fps=25.0):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


@pytest.fixture(scope="module")
def road_clip(tmp_path_factory):
    """A pinhole road, the car drifting and the dashes moving: 40 frames at 640x360."""
    frames = []
    for i in range(40):
        f, _ = pinhole_road((640, 360), focal_px=560.0, offset_m=0.4 * np.sin(i / 8), seed=i)
        frames.append(np.roll(f, 0, axis=0))
    return _write(tmp_path_factory.mktemp("clip") / "road.mp4", frames)


def _run(source, out, **kw):
    from apps.driving_perception.sources import open_source

    with DrivePipeline(None, DriveOptions(annotate=False, **kw)) as pipe:
        return pipe.run(open_source(source), out)


def test_truncated_video_degrades_with_the_reason(driving_dir, tmp_path):
    data = (driving_dir / "lanelines_p1" / "test_videos" / "solidWhiteRight.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    summary = _run(cut, tmp_path / "out")
    assert 0 < summary.processed < 221 and summary.health_final == "DEGRADED"
    assert f"source ended at frame {summary.processed} of 221 declared" in _health(tmp_path / "out")[-1]["reasons"][0]


def test_frozen_stretch_inside_an_mp4_fails_then_recovers(tmp_path):
    moving = [pinhole_road((640, 360), focal_px=560.0, offset_m=0.02 * i, seed=i)[0] for i in range(50)]
    frames = moving[:15] + [moving[15]] * 25 + moving[15:]            # re-encoded: never byte-identical
    summary = _run(_write(tmp_path / "frozen.mp4", frames), tmp_path / "out")
    health = _health(tmp_path / "out")
    assert [(e["from"], e["to"]) for e in health] == [("OK", "FAILED"), ("FAILED", "OK")]
    assert "scene frozen" in health[0]["reasons"][0] and 15 < health[0]["frame"] <= 31
    assert summary.health_final == "OK"


def test_unreadable_images_and_empty_sources(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    summary = _run(folder, tmp_path / "out")
    assert summary.processed == 0 and summary.health_final == "FAILED"
    assert _health(tmp_path / "out")[0]["reasons"] == ["no frames: the source delivered none",
                                                       "all 1 image(s) unreadable"]
    good, _ = pinhole_road((640, 360), focal_px=560.0)
    cv2.imwrite(str(folder / "b.png"), good)
    summary = _run(folder, tmp_path / "out2")
    assert summary.processed == 1 and summary.health_final == "DEGRADED"
    assert "1 unreadable image(s) skipped" in summary.health_reasons


def test_cli_exit_codes_for_sources_that_give_nothing(yolox_path, tmp_path, capsys):
    base = ["--model", str(yolox_path), "--fp32", "--no-video"]
    assert main(["drive", "run", "7", "--out", str(tmp_path / "cam"), *base]) == 4      # no such camera
    err = capsys.readouterr().err
    assert "camera unavailable" in err and "Traceback" not in err
    assert "camera unavailable" in _health(tmp_path / "cam")[0]["reasons"][0]
    assert main(["drive", "run", "rtsp://127.0.0.1:1/cam", "--live", "--out", str(tmp_path / "url"), *base]) == 4
    assert "camera unavailable" in capsys.readouterr().err                          # a refused stream URL
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"garbage")
    assert main(["drive", "run", str(folder), "--out", str(tmp_path / "o"), *base]) == 2
    (tmp_path / "file").write_text("x")
    assert main(["drive", "run", str(folder), "--out", str(tmp_path / "file"), *base]) == 2
    assert "is an existing file" in capsys.readouterr().err
    assert main(["drive", "calibrate", str(folder), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_estimated_geometry_is_announced_saved_and_reused(road_clip, yolox_path, tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["drive", "run", str(road_clip), "--out", str(out), "--model", str(yolox_path), "--fp32",
                 "--no-video", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["geometry"]["source"] == "estimated" and info["lanes_found"] >= 36
    geo = [e for e in _jsonl(out / "events.jsonl") if e["event"] == "geometry"]
    assert [e["state"] for e in geo] == ["provisional"] and geo[0]["frame"] == 0 and geo[0]["confidence"] > 0.5
    saved = json.loads((out / "camera.json").read_text())
    assert saved["lens"] is None and saved["road"]["source"] == "estimated"
    frames = _jsonl(out / "frames.jsonl")
    assert all(f["lanes"]["geometry"] == "estimated" for f in frames)
    out_b = tmp_path / "b"                                           # reuse: no estimation any more
    assert main(["drive", "run", str(road_clip), "--out", str(out_b), "--model", str(yolox_path), "--fp32",
                 "--no-video", "--json", "--calibration", str(out / "camera.json")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["geometry"]["source"] == "saved" and info["lanes_found"] >= 36
    geo = [e for e in _jsonl(out_b / "events.jsonl") if e["event"] == "geometry"]
    assert [(e["source"], e["state"], e["frame"]) for e in geo] == [("saved", "in use", 0)]
    assert info["geometry"]["vanishing_point"] == pytest.approx(saved["road"]["vanishing_point"], abs=0.1)
    assert not (out_b / "camera.json").exists()
    out_c = tmp_path / "c"                                           # a preset overrides both
    assert main(["drive", "run", str(road_clip), "--out", str(out_c), "--model", str(yolox_path), "--fp32",
                 "--no-video", "--json", "--calibration", str(out / "camera.json"),
                 "--lane-preset", "udacity_p1"]) == 0
    assert json.loads(capsys.readouterr().out)["geometry"]["source"] == "preset"
    geo = [e for e in _jsonl(out_c / "events.jsonl") if e["event"] == "geometry"]
    assert [(e["source"], e["state"], e["confidence"]) for e in geo] == [("preset", "preset", None)]


def test_lost_lanes_fall_back_to_the_vp_corridor(road_clip, tmp_path):
    """Lanes painted over after 10 frames: LDW off, lead from the VP corridor, both said;
    after 3 s of it, moving, health is DEGRADED for the lanes while detection goes on."""
    clip_frames = [f.data for f in VideoSource(road_clip)]
    frames = []
    for f in clip_frames + clip_frames[10:] + clip_frames[10:]:    # 10 with lanes, 80 without (3.2 s)
        f = f.copy()
        if len(frames) >= 10:
            f[165:] = 80 + 20 * (len(frames) % 2)                   # bare road below the horizon, changing
        frames.append(f)
    clip = _write(tmp_path / "lost.mp4", frames)
    summary = _run(clip, tmp_path / "out")
    events = _jsonl(tmp_path / "out" / "events.jsonl")
    kinds = [e["event"] for e in events]
    assert "lanes" in kinds and "lane_features" in kinds
    feat = next(e for e in events if e["event"] == "lane_features")
    assert feat["lead_from"] == "vp corridor" and feat["ldw"] == "off"
    rec = _jsonl(tmp_path / "out" / "frames.jsonl")[-1]
    assert rec["lanes"]["state"] == "lost" and rec["lead_from"] == "vp corridor" and rec["ldw_available"] is False
    assert rec["perception"] == "available" and rec["health"] == "DEGRADED"
    assert summary.lanes_found <= 12
    health = _health(tmp_path / "out")
    assert [(e["from"], e["to"]) for e in health] == [("OK", "DEGRADED")]
    assert "lanes lost for 3.0" in health[0]["reasons"][0] and 86 <= health[0]["frame"] <= 92   # lost at ~14
