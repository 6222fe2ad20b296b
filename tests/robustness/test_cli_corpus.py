"""A bad-input corpus, built in a fixture, run through the CLI: every case gives its
documented exit code, no traceback, and no study lost (each input file is one study in the
worklist and one audit record)."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest

from sdk.cli.main import main
from tests.medical.conftest import BUNDLE, chest_like, make_dicom, write_png
from tests.medical.test_io import _nan_tiff, _truncated, huge_png


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Files a hostile or careless user drops in an inbox: damaged, special, oversize."""
    src = tmp_path / "inbox"
    src.mkdir()
    write_png(src / "good.png", chest_like(64))
    write_png(src / "good16.png", chest_like(64, 3), bits=16)
    _truncated(src, ".png")
    _truncated(src, ".jpg")
    _nan_tiff(src)
    huge_png(src / "huge.png")
    write_png(src / "blank.png", np.full((64, 64), 0.5, np.float32))
    (src / "empty.png").write_bytes(b"")
    (src / "text.dcm").write_text("not a dicom at all")
    (src / "garbage.jpg").write_bytes(os.urandom(2000))
    (src / "preamble.dcm").write_bytes(b"\0" * 128 + b"DICM" + os.urandom(300))
    os.symlink("/dev/zero", src / "zero.png")
    os.symlink("/dev/urandom", src / "urandom.dcm")
    os.mkfifo(src / "fifo.png")
    os.symlink(src / "nowhere.png", src / "dangling.png")
    os.symlink(src, src / "loop.png")       # a symlink to a folder, named like a file: not followed, not a study
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(src / "sock.png"))
    s.close()
    (src / "sub").mkdir()
    try:
        make_dicom(src / "sub" / "nopix.dcm", pixels=False)
    except pytest.skip.Exception:
        pass
    return src


def _run(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err, cap.err
    return code, cap.err


def test_triage_corpus(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    files = sorted(p.name for p in corpus.rglob("*") if not p.is_dir())
    code, _ = _run(["medical", "triage", str(corpus), "--out", str(out), "--include-identifiers", "--no-heatmaps",
                    "--bundle", str(BUNDLE)], capsys)
    assert code == 0
    rows = json.loads((out / "worklist.json").read_text())["studies"]
    assert sorted(Path(r["source"]).name for r in rows) == files          # nothing lost
    assert len((out / "audit.jsonl").read_text().splitlines()) == len(files)
    bad = [r for r in rows if not r["source"].endswith(("good.png", "good16.png"))]
    assert all(r["status"] == "not_analysed" and r["priority"] == "review" and r["reasons"] for r in bad)
    assert _run(["medical", "verify-audit", str(out / "audit.jsonl")], capsys)[0] == 0
    # a second run over the same inbox adds nothing new and removes nothing
    assert _run(["medical", "triage", str(corpus), "--out", str(out), "--no-heatmaps", "--bundle", str(BUNDLE)],
                capsys)[0] == 0
    again = json.loads((out / "worklist.json").read_text())["studies"]
    assert {r["study_id"] for r in again} == {r["study_id"] for r in rows}
    assert [r["priority"] for r in sorted(again, key=lambda r: r["study_id"])] == \
        [r["priority"] for r in sorted(rows, key=lambda r: r["study_id"])]


@pytest.mark.parametrize("case,expected", [
    ("out is a file", 2), ("out under /proc", 2), ("input missing", 2), ("watch a file", 2),
    ("trusted key missing", 2), ("audit missing", 2), ("audit is a FIFO", 2), ("audit garbage", 1),
    ("bundle is a file", 3), ("bundle folder without manifest", 3), ("worklist database damaged", 2),
])
def test_exit_codes(case, expected, corpus, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "garbage.jsonl").write_bytes(b"\xff\xfe{{{\n")
    (tmp_path / "nobundle").mkdir()
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "worklist.sqlite").write_bytes(b"SQLite format 3\x00" + os.urandom(3000))
    tri = ["medical", "triage"]
    args = {
        "out is a file": [*tri, str(corpus), "--out", str(tmp_path / "file")],
        "out under /proc": [*tri, str(corpus), "--out", "/proc/edgewise-test-out"],
        "input missing": [*tri, str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
        "watch a file": [*tri, str(tmp_path / "file"), "--out", str(tmp_path / "o"), "--watch", "--max-polls", "1"],
        "trusted key missing": [*tri, str(corpus), "--out", str(tmp_path / "o"), "--trusted-key",
                                str(tmp_path / "missing.pub")],
        "audit missing": ["medical", "verify-audit", str(tmp_path / "missing.jsonl")],
        "audit is a FIFO": ["medical", "verify-audit", str(tmp_path / "fifo")],
        "audit garbage": ["medical", "verify-audit", str(tmp_path / "garbage.jsonl")],
        "bundle is a file": [*tri, str(corpus), "--out", str(tmp_path / "o"), "--bundle", str(tmp_path / "file")],
        "bundle folder without manifest": [*tri, str(corpus), "--out", str(tmp_path / "o"), "--bundle",
                                           str(tmp_path / "nobundle")],
        "worklist database damaged": [*tri, str(corpus), "--out", str(tmp_path / "damaged")],
    }[case]
    code, err = _run(args, capsys)
    assert code == expected, err
    assert err.strip(), "every refusal says why"
