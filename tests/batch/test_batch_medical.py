"""`edgewise batch medical` on a local Ray (2 CPUs): the same decisions as `medical triage`,
an error row for a corrupt file, resume after a kill, and 1 or 2 workers alike."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from batch_helpers import rows_by_source

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spec():
    from apps.medical_imaging.batch import medical_spec

    return medical_spec()


@pytest.fixture(scope="module")
def runs(ray_session, archive, spec, tmp_path_factory):
    """The archive run with --workers 1 and --workers 2 (into separate folders)."""
    import pyarrow.parquet as pq

    from sdk.batch import run_job

    out = {}
    for w in (1, 2):
        d = tmp_path_factory.mktemp(f"batch_w{w}")
        s = run_job(spec, archive, d, workers=w, batch_size=4, progress=False)
        out[w] = (s, pq.read_table(s.results))
    return out


@pytest.fixture(scope="module")
def triage_rows(archive, tmp_path_factory):
    """`edgewise medical triage` (single process) on the same files, as printed by --json."""
    import contextlib
    import io

    from sdk.cli.main import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["medical", "triage", str(archive), "--out", str(tmp_path_factory.mktemp("triage")),
                   "--include-identifiers", "--no-heatmaps", "--json"])
    assert rc == 0
    return {str(Path(s["source"]).absolute()): s for s in json.loads(buf.getvalue())}


def test_same_decisions_as_medical_triage(runs, triage_rows):
    summary, table = runs[2]
    rows = rows_by_source(table)
    assert summary.listed == summary.processed == len(rows) == len(triage_rows) == 31
    assert set(rows) == set(triage_rows)
    for src, t in triage_rows.items():
        r = rows[src]
        assert (r["status"], r["priority"], r["reasons"]) == (t["status"], t["priority"], t["reasons"]), src
        if t.get("probability") is None:
            assert r["probability"] is None
        else:
            assert r["probability"] == pytest.approx(t["probability"], abs=1e-6)
        assert r["ood_score"] == t.get("ood_score")
        assert r["content_sha256"] == t.get("input_sha256", r["content_sha256"])
    assert {r["status"] for r in rows.values()} - {"not_analysed"}, "every image refused: the test shows nothing"


def test_corrupt_file_is_an_error_row(runs, archive, triage_rows):
    summary, table = runs[2]
    rows = rows_by_source(table)
    bad = rows[str(archive / "corrupt.png")]
    assert bad["error"] is True and bad["status"] == "not_analysed" and bad["probability"] is None
    assert "PNG" in bad["reasons"][0] and bad["content_sha256"] is not None
    refused = sum(t["status"] == "not_analysed" for t in triage_rows.values())   # corrupt + any gate/OOD refusal
    assert summary.errors == refused == sum(r["error"] for r in rows.values()) >= 1


def test_one_and_two_workers_identical(runs):
    (s1, t1), (s2, t2) = runs[1], runs[2]
    assert (s1.workers, s2.workers) == (1, 2)
    assert rows_by_source(t1) == rows_by_source(t2)
    assert len(set(t2.column("worker").to_pylist())) == 2        # both workers took part


def test_resume_after_kill(ray_session, archive, spec, runs, tmp_path, capsys):
    """A driver joining the cluster with --address, killed (os._exit) after its first flushed
    part; the rerun does only the rest, and the CLI then skips everything."""
    from sdk.batch import ResultStore, run_job

    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import os
        from apps.medical_imaging.batch import medical_spec
        from sdk.batch import run_job
        run_job(medical_spec(), {str(archive)!r}, {str(out)!r}, workers=1, batch_size=4, flush_rows=8,
                flush_seconds=3600,  # rows decide the first part: a slow worker start must not flush 4
                address={ray_session.get_runtime_context().gcs_address!r}, progress=False,
                on_flush=lambda n: os._exit(9))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr[-2000:]
    store = ResultStore(out)
    first = store.read_all()
    assert first is not None and 8 <= first.num_rows < 31
    assert not (out / "results.parquet").exists()                  # killed before the view

    s = run_job(spec, archive, out, workers=2, batch_size=4, progress=False)
    assert (s.skipped, s.processed) == (first.num_rows, 31 - first.num_rows)
    assert rows_by_source(store.read_all()) == rows_by_source(runs[2][1])   # each file once, same rows

    from sdk.cli.main import main

    assert main(["batch", "medical", str(archive), "--out", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["listed"], again["skipped"], again["processed"]) == (31, 31, 0)
