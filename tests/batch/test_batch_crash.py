"""Worker processes: an item that kills its worker (not an exception) does not stop the job; a
worker that cannot start fails it with its cause; work waits for every worker to be ready."""
from __future__ import annotations

import pytest


@pytest.mark.slow   # two actor restarts: seconds
def test_item_killing_its_worker_becomes_an_error_row(ray_session, tmp_path):
    from sdk.batch import JobSpec, ResultStore, run_job

    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.txt", "b.txt", "die.txt", "c.txt"):
        (src / name).write_text(name)
    spec = JobSpec(name="crash", processor="batch_helpers:CrashProcessor", model_name="m@1", model_hash="1" * 64,
                   fields=["name"], batch_size=1)
    s = run_job(spec, src, tmp_path / "out", workers=2, progress=False, crash_retries=1)
    rows = {r["source"].rsplit("/", 1)[1]: r for r in ResultStore(tmp_path / "out").read_all().to_pylist()}
    assert (s.processed, s.errors) == (4, 1) and set(rows) == {"a.txt", "b.txt", "c.txt", "die.txt"}
    die = rows["die.txt"]
    assert die["error"] is True and die["content_sha256"] is None     # no hash: a rerun tries it again
    assert "died on every try (2)" in die["reasons"][0]
    assert all(rows[n]["status"] == "ok" and rows[n]["name"] == n for n in ("a.txt", "b.txt", "c.txt"))


def test_worker_that_cannot_start_fails_the_job_with_its_cause(ray_session, tmp_path):
    from sdk.batch import JobSpec, run_job
    from sdk.errors import PipelineError

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a")
    spec = JobSpec(name="broken", processor="batch_helpers:BrokenInitProcessor", model_name="m@1",
                   model_hash="2" * 64)
    with pytest.raises(PipelineError, match=r"after 0 rows \(FileNotFoundError: bundle not found on this node"):
        run_job(spec, tmp_path / "src", tmp_path / "out", workers=1, progress=False)


def test_work_starts_once_every_worker_is_ready(ray_session, tmp_path):
    """--workers 2 with one worker slow to load: both still take part (without waiting for the
    pool, the first worker ready drains every batch while the second loads)."""
    from sdk.batch import JobSpec, ResultStore, run_job

    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / f"{i}.txt").write_text(str(i))
    spec = JobSpec(name="slowstart", processor="batch_helpers:SlowSecondStartProcessor", model_name="m@1",
                   model_hash="3" * 64, fields=["name"], batch_size=1,
                   kwargs={"marker": str(tmp_path / "first"), "delay_s": 4.0})
    s = run_job(spec, src, tmp_path / "out", workers=2, progress=False)
    table = ResultStore(tmp_path / "out").read_all()
    assert (s.workers, s.processed, s.errors) == (2, 8, 0)
    assert len(set(table.column("worker").to_pylist())) == 2
