"""sdk.batch without Ray: listing, job specs, the worker's rows, progress, the missing extra."""
from __future__ import annotations

import io
import sys

import pytest

from sdk.batch import ItemResult, JobSpec, Progress, list_items
from sdk.batch.items import Item

SPEC = dict(name="sizes", processor="batch_helpers:SizeProcessor", model_name="size@1", model_hash="0" * 64,
            scores=["size"], fields=["name"])


def test_list_items_folder_csv_parquet(tmp_path):
    (tmp_path / "a" / ".hidden").mkdir(parents=True)
    for name in ("a/x.png", "a/y.txt", "a/.hidden/z.png", "b.png", "out/c.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"12345")
    got = [i.source for i in list_items(tmp_path, [".png"], skip=tmp_path / "out")]
    assert got == [str(tmp_path / "b.png"), str(tmp_path / "a" / "x.png")]   # a folder's files, then its sub-folders
    (tmp_path / "list.csv").write_text("path,label\na/x.png,1\n/nonexistent/q.png,0\n")
    items = list_items(tmp_path / "list.csv")
    assert [i.source for i in items] == [str(tmp_path / "a" / "x.png"), "/nonexistent/q.png"]
    assert items[0].size_bytes == 5 and items[1].size_bytes is None      # missing: the job gives the reason
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"source": [str(tmp_path / "b.png")]}), tmp_path / "list.parquet")
    assert [i.source for i in list_items(tmp_path / "list.parquet")] == [str(tmp_path / "b.png")]
    (tmp_path / "bad.csv").write_text("name\nx.png\n")
    with pytest.raises(ValueError, match="column named one of path"):
        list_items(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError):
        list_items(tmp_path / "nope")


@pytest.mark.parametrize("bad, match", [
    ({"processor": "no_colon"}, "package.module:Class"),
    ({"scores": ["status"]}, "clash with the base columns"),
    ({"num_cpus": 0}, "greater than 0"),
    ({"extra_key": 1}, "Extra inputs"),
])
def test_job_spec_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        JobSpec(**{**SPEC, **bad})


def test_worker_rows_and_error_rows(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow as pa

    from sdk.batch.worker import BatchWorker

    (tmp_path / "ok.bin").write_bytes(b"x" * 10)
    (tmp_path / "boom.bin").write_bytes(b"y")
    w = BatchWorker(JobSpec(**SPEC, kwargs={"scale": 2.0}).model_dump_json())
    items = [Item.of(tmp_path / n).to_dict() for n in ("ok.bin", "boom.bin")]
    rows = w(pa.Table.from_pylist(items)).to_pylist()
    assert [r["status"] for r in rows] == ["ok", "error"]
    assert rows[0]["size"] == 20.0 and rows[0]["name"] == "ok.bin" and rows[0]["error"] is False
    assert rows[1]["error"] is True and rows[1]["reasons"] == ["RuntimeError: exploded on purpose"]
    assert rows[1]["content_sha256"] is not None and rows[1]["size"] is None
    assert all(r["model"] == "size@1" and r["model_hash"] == "0" * 64 for r in rows)


def test_progress_rate_and_eta():
    t = [100.0]
    buf = io.StringIO()
    p = Progress(100, "batch x", stream=buf, interval=5.0, clock=lambda: t[0])
    assert p.eta_s is None
    t[0] = 110.0
    p.update(20, errors=1)
    assert p.rate == pytest.approx(2.0) and p.eta_s == pytest.approx(40.0)
    assert buf.getvalue().strip() == "batch x: 20/100 items (20%), 1 errors, 2.0 items/s, ETA 0:00:40"
    t[0] = 111.0
    p.update(10)          # under the interval: no line
    assert buf.getvalue().count("\n") == 1
    assert p.eta_s == pytest.approx(70 / 10.0)   # rate since the first update (start-up excluded): 10 items/s


def test_item_result_forbids_unknown_fields():
    with pytest.raises(ValueError):
        ItemResult(status="ok", probability=0.5)


def test_cli_without_ray_exits_4_naming_the_extra(tmp_path, monkeypatch, capsys, archive):
    from sdk.cli.main import main

    monkeypatch.setitem(sys.modules, "ray", None)      # import ray -> ImportError
    rc = main(["batch", "medical", str(archive), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 4 and "pip install 'edgewise[cluster]'" in err, err


def test_scratch_dirs_of_dead_workers_are_removed(tmp_path, monkeypatch):
    import os
    import subprocess
    import tempfile

    from sdk.batch import scratch_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f"edgewise-batch-unit-{dead}-abc"
    live = tmp_path / f"edgewise-batch-unit-{os.getpid()}-def"
    stale.mkdir(), live.mkdir()

    class Owner:
        pass

    owner = Owner()
    new = scratch_dir("unit", owner)
    assert not stale.exists() and live.exists() and new.is_dir() and new.parent == tmp_path
    del owner                     # collected: its folder goes
    assert not new.exists()
