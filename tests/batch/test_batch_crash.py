"""An item that kills its worker process (not an exception) does not stop the job."""
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
