"""Nothing lost: the SQLite worklist across runs, concurrent runs, SIGINT, special files,
and the keyed audit log against truncation and rewriting."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from apps.medical_imaging.audit import AuditLog, _digest, verify
from apps.medical_imaging.io import Limits
from apps.medical_imaging.triage import Triage, scan
from apps.medical_imaging.worklist import Study
from apps.medical_imaging.worklist_db import WorklistDB
from sdk.cli.main import main
from tests.medical.conftest import chest_like, write_png

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _pngs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_png(folder / f"img{seed}_{i:03d}.png", chest_like(48, seed * 1000 + i)) for i in range(n)]


def _worklist(out: Path) -> list[dict]:
    return json.loads((out / "worklist.json").read_text())["studies"]


def _audit_lines(out: Path) -> int:
    return len((out / "audit.jsonl").read_text().splitlines())


def test_second_run_adds_to_the_worklist(bundle_path, tmp_path):
    out = tmp_path / "out"
    with Triage(out, [bundle_path], heatmaps=False) as tri:
        tri.run(_pngs(tmp_path / "a", 4, 1))
    with Triage(out, [bundle_path], heatmaps=False) as tri:
        tri.run(_pngs(tmp_path / "b", 3, 2))
        assert len(tri.studies) == 3                      # this session's decisions
    assert len(_worklist(out)) == 7 == _audit_lines(out)  # both runs' studies in the views
    assert verify(out / "audit.jsonl").ok


def _study(sid: str, priority: str, seq: int, status: str = "ok", p: float | None = 0.5) -> Study:
    return Study(study_id=sid, arrival=T0, arrival_seq=seq, status=status, priority=priority,
                 probability=p, reasons=["r"])


def test_a_study_is_never_demoted_and_may_be_raised(tmp_path):
    with WorklistDB(tmp_path) as db:
        db.upsert(_study("s1", "review", 1), T0)
        kept = db.upsert(_study("s1", "routine", 7, p=0.01), T0)     # a later run says routine
        assert kept.priority == "review" and kept.arrival_seq == 1
        assert any("never demoted" in n for n in kept.notes)
        raised = db.upsert(_study("s1", "urgent", 9, p=0.99), T0)
        assert raised.priority == "urgent" and raised.arrival_seq == 1   # first arrival kept
        assert db.count() == 1 and db.studies()[0].priority == "urgent"
        db.upsert(_study("s2", "routine", 10), T0)
        assert [s.study_id for s in db.studies()] == ["s1", "s2"]


def test_concurrent_runs_into_one_out(bundle_path, tmp_path):
    out = tmp_path / "out"
    folders = [tmp_path / "a", tmp_path / "b"]
    for i, f in enumerate(folders):
        _pngs(f, 6, i + 1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "sdk.cli.main", "medical", "triage", str(f), "--out", str(out),
                               "--no-heatmaps", "--bundle", str(bundle_path)], env=env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for f in folders]
    errs = [p.communicate(timeout=240)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert len(_worklist(out)) == 12 == _audit_lines(out)
    res = verify(out / "audit.jsonl")
    assert res.ok and res.lines == 12, res.message


def test_sigint_keeps_what_is_done(bundle_path, tmp_path, monkeypatch):
    import apps.medical_imaging.triage as triage_mod

    src = tmp_path / "in"
    paths = _pngs(src, 6)
    real = triage_mod.read_header

    def interrupt_at_fourth(path, limits=None):
        if Path(path) == paths[3]:
            raise KeyboardInterrupt
        return real(path, limits)

    monkeypatch.setattr(triage_mod, "read_header", interrupt_at_fourth)
    out = tmp_path / "out"
    argv = ["medical", "triage", str(src), "--out", str(out), "--no-heatmaps", "--bundle", str(bundle_path)]
    assert main(argv) == 130
    rows = _worklist(out)
    assert len(rows) == 3 == _audit_lines(out)             # every audited study is in the views
    assert len((out / "worklist.csv").read_text().splitlines()) == 4
    assert verify(out / "audit.jsonl").ok


def test_special_files_get_a_reason_and_the_batch_goes_on(bundle_path, tmp_path, monkeypatch):
    src = tmp_path / "in"
    good = _pngs(src, 2)
    os.symlink("/dev/zero", src / "zero.png")
    os.mkfifo(src / "pipe.png")
    os.symlink(src / "missing.png", src / "dangling.png")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "s.png"))
    (src / "big.png").write_bytes(good[0].read_bytes() + b"\0" * 5000)
    (src / "locked.png").write_bytes(good[0].read_bytes())
    real_open = os.open

    def deny(path, flags, *a, **k):   # tests run as root, where chmod 000 still reads
        if str(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", deny)
    limit = good[0].stat().st_size + 100
    with Triage(tmp_path / "out", [bundle_path], include_identifiers=True, heatmaps=False,
                limits=Limits(max_file_bytes=limit)) as tri:
        tri.run(scan(src))
    sock.close()
    by = {Path(s.source).name: s for s in tri.studies}
    assert set(by) == {p.name for p in good} | {"zero.png", "pipe.png", "dangling.png", "s.png", "big.png",
                                                "locked.png"}
    reason = {k: by[k].reasons[0] for k in by}
    assert "character device" in reason["zero.png"] and "symlink" in reason["zero.png"]
    assert "FIFO" in reason["pipe.png"] or "socket or FIFO" in reason["pipe.png"]
    assert "vanished" in reason["dangling.png"]
    assert "socket" in reason["s.png"]
    assert "above the limit" in reason["big.png"]
    assert "permission denied" in reason["locked.png"]
    assert all(by[p.name].status != "not_analysed" for p in good)
    assert all(by[k].status == "not_analysed" and by[k].priority == "review" for k in reason if k.startswith(
        ("zero", "pipe", "dangling", "s.", "big", "locked")))


def test_watch_survives_special_files(bundle_path, tmp_path):
    src = tmp_path / "in"
    _pngs(src, 1)
    os.mkfifo(src / "pipe.dcm")
    os.symlink("/dev/zero", src / "zero.dcm")
    with Triage(tmp_path / "out", [bundle_path], heatmaps=False) as tri:
        tri.watch(src, interval=0, max_polls=2)
        assert len(tri.studies) == 3
        _pngs(src, 1, seed=5)
        tri.watch(src, interval=0, max_polls=2)
        assert len(tri.studies) == 4                     # the inbox kept going


def test_out_is_a_file_exit_2(bundle_path, tmp_path, capsys):
    _pngs(tmp_path / "in", 1)
    (tmp_path / "file").write_text("x")
    assert main(["medical", "triage", str(tmp_path / "in"), "--out", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err


# --- audit log: truncation, rewriting, garbage --------------------------------------------
def _fields(i: int) -> dict:
    return dict(time=f"t{i}", model="m", model_version="1", sdk_version="0", model_sha256="a" * 64,
                input_sha256="b" * 64, study_id=f"s{i}", decision={"priority": "review", "probability": 0.5},
                status="ok", reason="r")


@pytest.fixture
def audit5(tmp_path) -> Path:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for i in range(5):
        log.append(**_fields(i))
    return path


def _cli(path: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["medical", "verify-audit", str(path), *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_audit_key_is_private(audit5):
    from apps.medical_imaging.audit_key import default_key_path

    assert default_key_path().stat().st_mode & 0o777 == 0o600
    assert verify(audit5).ok


def test_deleted_tail_is_detected(audit5, capsys):
    lines = audit5.read_text().splitlines(keepends=True)
    audit5.write_text("".join(lines[:3]))
    code, text = _cli(audit5, capsys)
    assert code == 1 and "line 4" in text and "tail deleted" in text
    assert _cli(audit5, capsys, "--chain-only")[0] == 0        # what the chain alone cannot see


def test_rewritten_chain_is_detected(audit5, capsys):
    recs = [json.loads(x) for x in audit5.read_text().splitlines()]
    recs[2]["decision"]["priority"] = "routine"
    prev = recs[1]["hash"]
    for r in recs[2:]:                     # re-hash from line 3 on, as an attacker without the key can
        r["prev_hash"] = prev
        r["hash"] = _digest(r)
        prev = r["hash"]
    audit5.write_text("".join(json.dumps(r) + "\n" for r in recs))
    code, text = _cli(audit5, capsys)
    assert code == 1 and "line 3" in text and "MAC" in text
    for r in recs:                          # the whole chain re-hashed and MACs dropped
        r.pop("mac")
    audit5.write_text("".join(json.dumps(r) + "\n" for r in recs))
    code, text = _cli(audit5, capsys)
    assert code == 1 and "line 1" in text


def _assert_refused(audit, capsys, message: str) -> None:
    """``verify-audit`` exits 1 naming ``message``, and opening the log refuses the broken chain."""
    code, text = _cli(audit, capsys)
    assert code == 1 and message in text
    with pytest.raises(ValueError, match="broken audit chain"):
        AuditLog(audit)


@pytest.mark.parametrize("garbage", [b"\xff\xfe\x00garbage\n", b"{not json}\n", b"\x00" * 40, b"[]\n",
                                     b"x" * (3 << 20)])
def test_garbage_bytes_are_detected(audit5, capsys, garbage):
    with open(audit5, "ab") as fh:
        fh.write(garbage)
    _assert_refused(audit5, capsys, "line 6")


def test_missing_or_forged_checkpoint_is_detected(audit5, capsys):
    cp = audit5.with_name(audit5.name + ".checkpoint")
    d = json.loads(cp.read_text())
    d["count"] = 3
    cp.write_text(json.dumps(d))
    code, text = _cli(audit5, capsys)
    assert code == 1 and "does not verify" in text
    cp.unlink()
    assert _cli(audit5, capsys)[0] == 0                 # the device's own copy still vouches for it
    from apps.medical_imaging.audit_key import device_checkpoint_path

    device_checkpoint_path(audit5).unlink()
    _assert_refused(audit5, capsys, "no checkpoint")


def test_restored_old_checkpoint_does_not_hide_a_cut_tail(audit5, capsys):
    cp = audit5.with_name(audit5.name + ".checkpoint")
    lines = audit5.read_text().splitlines(keepends=True)
    old = cp.read_bytes()                       # the attacker keeps the checkpoint at 5 records
    log = AuditLog(audit5)
    log.append(**_fields(5))
    log.append(**_fields(6))
    audit5.write_text("".join(lines))           # cut back to 5 records
    cp.write_bytes(old)                         # and roll the folder's checkpoint back
    code, text = _cli(audit5, capsys)
    assert code == 1 and "line 6" in text and "tail deleted" in text   # the device's copy says 7


def test_runs_that_create_the_database_at_once_all_open_it(tmp_path):
    """Switching a new database file to WAL takes an exclusive lock, and SQLite answers a second
    opener 'locked' at once rather than waiting: three runs starting together on a fresh --out
    must all get in (before the retry, about 1 in 20 was refused)."""
    code = ("import sys, time\nfrom datetime import datetime, timezone\n"
            "from apps.medical_imaging.worklist_db import WorklistDB\n"
            "t0 = float(sys.argv[2])\nwhile time.time() < t0: pass\n"
            "db = WorklistDB(sys.argv[1])\n"
            "for _ in range(10): db.next_arrival(datetime.now(timezone.utc))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    import time

    for trial in range(6):
        out = tmp_path / f"o{trial}"
        out.mkdir()
        start = str(time.time() + 0.4)
        procs = [subprocess.Popen([sys.executable, "-c", code, str(out), start], env=env, stderr=subprocess.PIPE)
                 for _ in range(3)]
        errs = [p.communicate(timeout=60)[1].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], errs
