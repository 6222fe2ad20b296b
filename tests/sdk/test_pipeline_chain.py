"""StreamingPipeline as a chain: a queue and drop policy per edge, per-stage stats, events,
fan-out and flush, the feedback gate, and what a stage error leaves behind."""
from __future__ import annotations

import threading
import time

import pytest

from sdk.errors import PipelineError
from sdk.pipeline import Frame, Gate, Stage, StreamEvent, StreamingPipeline


class ListSink:
    def __init__(self):
        self.items, self.closed = [], False

    def write(self, x):
        self.items.append(x)

    def close(self):
        self.closed = True


def frames(n, t0=None):
    t0 = time.monotonic() if t0 is None else t0
    return [Frame(i, t0 + i * 0.01, i) for i in range(n)]


def test_chain_order_and_per_stage_counts():
    sink, events = ListSink(), []
    st = StreamingPipeline(frames(20), [Stage("index", lambda f: f.index),
                                        Stage("even", lambda i: None if i % 2 else i),
                                        Stage("ten", lambda i: i * 10)],
                           sink, drop="block", on_event=events.append).run()
    assert sink.items == [i * 10 for i in range(0, 20, 2)] and sink.closed
    s = st.stages
    assert (s["index"].received, s["index"].emitted) == (20, 20)
    assert (s["even"].received, s["even"].emitted, s["even"].consumed) == (20, 10, 10)
    assert (s["ten"].received, s["ten"].emitted) == (10, 10)
    assert s["ten"].latency.count == 10 and s["index"].p50_ms >= 0 and s["index"].p90_ms >= s["index"].p50_ms
    assert st.read == st.processed + st.dropped + st.errors + st.late == 20
    assert [e.kind for e in events] == ["end"] and events[0].message == "source exhausted"
    assert st.to_dict()["stages"]["even"]["consumed"] == 10


@pytest.mark.parametrize("drop, kept", [("newest", [0, 1]), ("oldest", [0, 9]), ("block", list(range(10)))])
def test_inner_edge_drop_policies(drop, kept):
    """The second stage holds item 0 until its one-slot queue has discarded 8 of the other 9."""
    release, holding = threading.Event(), threading.Event()
    events = []

    def on_event(ev):
        events.append(ev)
        if sum(e.kind == "drop" for e in events) == 8:
            release.set()

    def first(x):
        return x

    def second(x):
        if x == 0:
            holding.set()
            release.wait(10 if drop != "block" else 0.3)   # block: the first stage waits instead
        return x

    def source():
        for i in range(10):
            if i == 1:
                holding.wait(10)
            yield i

    sink = ListSink()
    st = StreamingPipeline(source(), [Stage("first", first), Stage("second", second, queue_size=1, drop=drop)],
                           sink, drop="block", on_event=on_event).run()
    assert sink.items == kept
    drops = [e for e in events if e.kind == "drop"]
    assert st.stages["second"].dropped == len(drops) == 10 - len(kept) == st.dropped
    assert all(e.stage == "second" and e.item not in kept for e in drops)
    assert st.stages["second"].high_water <= 1


def test_stage_error_is_a_typed_event_and_keeps_going():
    def flaky(x):
        if x == 3:
            raise KeyError("boom")
        return x

    sink, events = ListSink(), []
    st = StreamingPipeline(range(6), [Stage("a", lambda x: x), Stage("flaky", flaky)], sink,
                           drop="block", on_event=events.append).run()
    err = [e for e in events if e.kind == "error"]
    assert len(err) == 1 and err[0].stage == "flaky" and err[0].item == 3 and not err[0].fatal
    assert isinstance(err[0].error, PipelineError) and isinstance(err[0].error.__cause__, KeyError)
    assert sink.items == [0, 1, 2, 4, 5] and st.stages["flaky"].errors == 1 == st.errors


def test_fatal_stage_error_stops_but_delivers_what_was_already_processed():
    """Items already past the failing stage still reach the sink; nothing is lost silently."""
    reached = threading.Event()

    def slow_last(x):
        if x == 0:
            reached.wait(10)      # item 0 is held here while item 1 fails upstream
        return x

    def fails_on_one(x):
        if x == 1:
            reached.set()
            raise ValueError("bad item")
        return x

    sink, events = ListSink(), []
    sp = StreamingPipeline(range(5), [Stage("check", fails_on_one, on_error="raise"), Stage("last", slow_last)],
                           sink, drop="block", on_event=events.append)
    with pytest.raises(PipelineError, match="stage 'check' failed: ValueError: bad item"):
        sp.run()
    st = sp.stats
    assert sink.items == [0] and sink.closed
    assert st.read == st.processed + st.dropped + st.errors
    assert [e.kind for e in events if e.kind in ("error", "end")] == ["error", "end"]
    assert events[-1].message == "stage failed" and any(e.fatal for e in events if e.kind == "error")


def test_fan_out_and_flush_at_end_of_stream():
    held = []

    def pairs(x):
        held.append(x)
        if len(held) == 2:
            out = [tuple(held)]
            held.clear()
            return out
        return []

    def flush():
        return [tuple(held)] if held else []

    sink = ListSink()
    st = StreamingPipeline(range(5), [Stage("pairs", pairs, fan_out=True, flush=flush), Stage("n", len)],
                           sink, drop="block").run()
    assert sink.items == [2, 2, 1]
    assert st.stages["pairs"].emitted == 3 and st.stages["pairs"].consumed == 3


def test_gate_mutes_items_captured_while_closed():
    """Feedback: the sink closes the gate; items *captured* inside it are discarded by the
    gated stage (counted), items captured outside are not, however late they are read."""
    t0 = 1000.0
    gate = Gate("mute", clock=lambda: t0)
    gate.close_for(0.05)                     # closed over [1000.00, 1000.05)
    seen_gated = []
    sink = ListSink()
    st = StreamingPipeline(frames(10, t0=t0 - 0.02), [Stage("listen", lambda f: f.index, gate=gate,
                                                            on_gated=seen_gated.append)],
                           sink, drop="block").run()
    # captured at t0-0.02 + i*0.01: items 2..6 fall inside [t0, t0+0.05)
    assert sink.items == [0, 1, 7, 8, 9]
    assert [f.index for f in seen_gated] == [2, 3, 4, 5, 6]
    assert st.stages["listen"].gated == 5 == st.gated
    assert st.read == st.processed + st.gated


def test_gate_intervals_extend_and_open():
    now = [10.0]
    g = Gate("speaker", clock=lambda: now[0])
    assert not g.is_closed() and g.open_at == 0.0
    assert g.close_for(1.0) == 11.0
    assert g.close_for(0.5) == 11.5            # still closed: extended
    assert g.is_closed(10.2) and g.is_closed(11.4) and not g.is_closed(11.5) and not g.is_closed(9.9)
    now[0] = 11.0
    g.open()
    assert not g.is_closed() and g.is_closed(10.5)   # the past interval is still remembered
    with pytest.raises(ValueError):
        g.close_for(-1)
    with pytest.raises(TypeError, match="Gate"):
        Stage("x", abs, gate=object())


def test_age_is_capture_to_stage_output():
    old = time.monotonic() - 5.0
    st = StreamingPipeline([Frame(0, old, 0)], [Stage("a", lambda f: f)], drop="block").run()
    assert st.stages["a"].age.count == 1 and st.stages["a"].age.min_ms >= 5000.0


def test_stage_and_pipeline_validation():
    for bad in (dict(drop="sideways"), dict(queue_size=0), dict(on_error="x"), dict(workers=0)):
        with pytest.raises(ValueError):
            Stage("s", abs, **bad)
    with pytest.raises(ValueError, match="at least one stage"):
        StreamingPipeline(range(3), [])
    with pytest.raises(ValueError, match="unique"):
        StreamingPipeline(range(3), [Stage("a", abs), Stage("a", abs)])


def test_on_event_errors_do_not_stop_the_stream():
    def broken(ev: StreamEvent):
        raise RuntimeError("display gone")

    sink = ListSink()
    st = StreamingPipeline(range(4), [Stage("a", lambda x: 1 / x)], sink, drop="block", on_event=broken).run()
    assert st.errors == 1 and sink.items == [1.0, 0.5, 1 / 3]
