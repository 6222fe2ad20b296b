"""`edgewise batch drive` on a local Ray: per-clip rows whose events equal `drive run`'s, and
an error row for a clip that cannot be decoded."""
from __future__ import annotations

import json
from pathlib import Path


def test_clips_give_events_and_summaries_like_drive_run(ray_session, yolox_path, tmp_path, capsys):
    yolox = yolox_path
    from apps.driving_perception.batch import drive_spec
    from apps.driving_perception.synthetic import write_clip
    from sdk.batch import ResultStore, run_job
    from sdk.cli.main import main

    clips = tmp_path / "clips"
    good = write_clip(clips / "road.mp4", n_frames=30, size=(640, 360))
    (clips / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    s = run_job(drive_spec(str(yolox), max_frames=30), clips, tmp_path / "out", workers=2, progress=False)
    assert (s.listed, s.processed, s.errors) == (2, 2, 1)
    rows = {Path(r["source"]).name: r for r in ResultStore(tmp_path / "out").read_all().to_pylist()}
    assert rows["broken.mp4"]["error"] is True and rows["broken.mp4"]["reasons"]

    rc = main(["drive", "run", str(good), "--out", str(tmp_path / "single"), "--model", str(yolox), "--fp32",
               "--no-video", "--threads", "1", "--max-frames", "30", "--json"])
    assert rc == 0
    single = json.loads(capsys.readouterr().out)
    events = [json.loads(x) for x in (tmp_path / "single" / "events.jsonl").read_text().splitlines() if x.strip()]
    assert events, "the synthetic clip drifts across its lane: an LDW is expected"
    r = rows["road.mp4"]
    assert r["status"] == "ok" and r["error"] is False
    assert r["frames"] == single["processed"] == 30 and r["health_final"] == single["health_final"]
    assert json.loads(r["events_json"]) == events
    assert r["events"] == len(events) and r["ldw"] == sum(e["event"] == "LDW" for e in events)
