"""Pipeline (one item at a time) and StreamingPipeline (threads, queues, deadlines)."""
from __future__ import annotations

import threading
import time

import pytest

from sdk.errors import PipelineError
from sdk.pipeline import Frame, Pipeline, Stage, StreamingPipeline, StreamStats


class ListSink:
    def __init__(self):
        self.items, self.closed = [], False

    def write(self, x):
        if self.closed:
            raise RuntimeError("write after close")
        self.items.append(x)

    def close(self):
        self.closed = True


def frames(n, backdate=lambda i: 0.0):
    for i in range(n):
        yield Frame(i, time.monotonic() - backdate(i), i)


# --- Pipeline ---------------------------------------------------------------------------
def test_pipeline_runs_in_order_and_times_stages():
    p = Pipeline([Stage("pre", lambda x: x + 1), Stage("model", lambda x: x * 10), str])
    assert p(1) == "20" and p(2) == "30"
    assert list(p.stats) == ["pre", "model", "str"]
    assert all(s.count == 2 and s.max_ms >= s.min_ms >= 0 for s in p.stats.values())
    assert p.total_stats.count == 2


def test_pipeline_error_names_the_stage_and_keeps_the_cause():
    def model(x):
        raise ValueError("input must be 3-channel")

    p = Pipeline([Stage("pre", lambda x: x), Stage("model", model), Stage("post", lambda x: x)])
    msg = r"stage 'model' failed: ValueError: input must be 3-channel"
    with pytest.raises(PipelineError, match=msg) as ei:
        p(1)
    assert isinstance(ei.value.__cause__, ValueError)
    assert p.errors == {"pre": 0, "model": 1, "post": 0}
    assert p.stats["post"].count == 0


def test_pipeline_rejects_bad_stages():
    with pytest.raises(ValueError, match="unique"):
        Pipeline([Stage("a", abs), Stage("a", abs)])
    with pytest.raises(TypeError):
        Stage("a", 3)
    with pytest.raises(TypeError):
        Pipeline([42])


# --- StreamingPipeline ------------------------------------------------------------------
def test_fast_source_slow_stage_drop_oldest_counts_drops():
    """The stage is stuck on item 0 until the source has produced all 60 items, so the
    outcome is exact: the 2 newest stay queued, the 57 in between are dropped."""
    gate, started = threading.Event(), threading.Event()

    def source():
        it = frames(60)
        yield next(it)
        started.wait(30)                 # the worker holds item 0
        yield from it
        gate.set()

    def slow(f):
        started.set()
        gate.wait(30)
        return f.index

    sink = ListSink()
    sp = StreamingPipeline(source(), [Stage("slow", slow)], sink, queue_size=2, drop="oldest")
    st = sp.run()
    assert isinstance(st, StreamStats)
    assert (st.read, st.dropped, st.processed, st.late, st.errors) == (60, 57, 3, 0, 0)
    assert sink.items == [0, 58, 59] and sink.closed     # drop-OLDEST: the newest survive
    assert sp.queue_high_water <= 2
    assert st.per_stage["slow"].count == st.processed
    assert st.end_to_end.count == st.processed and not st.running


def test_block_mode_processes_everything():
    sink = ListSink()
    st = StreamingPipeline(frames(30), [lambda f: time.sleep(0.002) or f.index], sink,
                           queue_size=1, drop="block").run()
    assert (st.read, st.processed, st.dropped) == (30, 30, 0)
    assert sink.items == list(range(30))


@pytest.mark.parametrize("on_late, processed", [("skip", 10), ("process", 20)])
def test_deadline_counts_late_items(on_late, processed):
    # odd items were "captured" 10 s ago: past a 5 s deadline when picked up
    sink = ListSink()
    st = StreamingPipeline(frames(20, backdate=lambda i: 10.0 * (i % 2)), [lambda f: f.index],
                           sink, drop="block", deadline_s=5.0, on_late=on_late).run()
    assert st.late == 10 and st.processed == processed
    if on_late == "skip":
        assert st.read == st.processed + st.dropped + st.errors + st.late
    if on_late == "skip":
        assert sink.items == list(range(0, 20, 2))


def test_dying_source_ends_cleanly_and_keeps_processed_items():
    def camera():
        yield from frames(5)
        raise RuntimeError("camera unplugged")

    sink = ListSink()
    st = StreamingPipeline(camera(), [lambda f: f.index], sink, drop="block").run()
    assert "camera unplugged" in st.source_error
    assert st.processed == 5 and sink.items == [0, 1, 2, 3, 4] and sink.closed


def test_stage_error_skip_and_raise():
    def flaky(f):
        if f.index == 3:
            raise KeyError("boom")
        return f.index

    sink = ListSink()
    st = StreamingPipeline(frames(8), [Stage("flaky", flaky)], sink, drop="block").run()
    assert st.errors == 1 and st.processed == 7 and 3 not in sink.items
    assert st.read == st.processed + st.dropped + st.errors + st.late
    sp = StreamingPipeline(frames(8), [Stage("flaky", flaky)], ListSink(), drop="block",
                           on_error="raise")
    with pytest.raises(PipelineError, match="stage 'flaky'"):
        sp.run()
    st = sp.stats
    assert st.errors == 1 and not st.running
    assert st.read == st.processed + st.dropped + st.errors + st.late


def test_sink_failure_stops_stream():
    class BadSink:
        def write(self, x):
            raise OSError("disk full")

    st = StreamingPipeline(frames(10), [lambda f: f], BadSink(), drop="block").run()
    assert "disk full" in st.sink_error and st.processed == 0


def test_stop_live_source_and_context_manager():
    def live():
        i = 0
        while True:
            yield Frame(i, time.monotonic(), i)
            i += 1
            time.sleep(0.001)

    sink = ListSink()
    with StreamingPipeline(live(), [lambda f: f.index], sink, queue_size=4) as sp:
        deadline = time.monotonic() + 10
        while sp.stats.processed < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sp.running
    st = sp.stats
    assert not st.running and sink.closed
    assert st.processed >= 5 and st.read == st.processed + st.dropped
    assert len(sink.items) == st.processed


def test_workers_and_callable_sink_and_none_results():
    got, lock = [], threading.Lock()

    def collect(x):
        with lock:
            got.append(x)

    st = StreamingPipeline(frames(40), [lambda f: None if f.index % 4 == 0 else f.index],
                           collect, drop="block", workers=3).run()
    assert st.processed == 40 and sorted(got) == [i for i in range(40) if i % 4]


def test_plain_items_without_timestamps_and_validation():
    st = StreamingPipeline(range(5), [lambda x: x], drop="block", deadline_s=60).run()
    assert st.processed == 5 and st.late == 0
    assert st.to_dict()["per_stage"]["<lambda>"]["count"] == 5
    for bad in (dict(drop="newer"), dict(queue_size=0), dict(deadline_s=0), dict(on_late="x")):
        with pytest.raises(ValueError):
            StreamingPipeline(range(3), [abs], **bad)
    sp = StreamingPipeline(range(3), [abs])
    sp.run()
    with pytest.raises(PipelineError, match="already started"):
        sp.start()


def test_stop_closes_a_blocked_source():
    """A source blocked waiting for data (a silent microphone) is woken by stop()."""
    class Silent:
        def __init__(self):
            self.closed = threading.Event()

        def __iter__(self):
            yield Frame(0, time.monotonic(), 0)
            self.closed.wait(30)          # blocks until close()

        def close(self):
            self.closed.set()

    src = Silent()
    sp = StreamingPipeline(src, [lambda f: f.index], ListSink()).start()
    deadline = time.monotonic() + 10
    while sp.stats.processed < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    st = sp.stop(timeout=20)
    assert src.closed.is_set() and not st.running and st.processed == 1
