"""optimize(): the selection rules with an injected evaluator and latency measurer (deterministic),
the budget parser, the Pareto set, and a real sensitivity analysis on the tiny CNN."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdk.compress import Budget, CalibrationData, OptimizeOptions, OutputFidelity, Recipe, analyze_sensitivity, optimize
from sdk.compress.results import Candidate, pareto_front

CANDS = {
    "fp32_optimized": Recipe([{"pass": "optimize_graph"}]),
    "dynamic_int8": Recipe([{"pass": "quantize_dynamic"}]),
    "fp16": Recipe([{"pass": "fp16"}]),
    "broken": Recipe([{"pass": "quantize_int4"}]),  # no MatMul in the CNN: fails, recorded
}


class FakeEval:
    """Metric by candidate file name; the input model (tiny_cnn.onnx) scores 0.90."""

    name = "fake_acc"

    def __init__(self, metrics):
        self.metrics = metrics

    def __call__(self, path):
        return self.metrics.get(Path(path).stem, 0.90)


def fake_latency(table):
    def fn(paths, feeds):
        assert "input" in feeds
        return {n: table[n] for n in paths}
    return fn


def _opt(model, calib, tmp_path, metrics, lat, max_drop=0.01, size_only=False):
    opts = OptimizeOptions(out_dir=tmp_path / "o", budget={"max_drop": max_drop, "size_only": size_only},
                           latency={"measure": fake_latency(lat), "energy": False}, candidates={"recipes": CANDS})
    return optimize(model, calib, FakeEval(metrics), opts)


def test_flat_keywords_map_onto_the_sections(tmp_path):
    flat = OptimizeOptions.from_kwargs(max_drop="2%", latency_rounds=3, min_speedup=1.2, holdout=len,
                                       candidates={"a": CANDS["fp16"]}, input_shapes=[[1, 3, 8, 8]],
                                       sensitivity=False, allocation_reserve=0.5, out_dir=tmp_path)
    assert flat == OptimizeOptions(out_dir=tmp_path, budget={"max_drop": "2%"},
                                   latency={"rounds": 3, "min_speedup": 1.2}, sensitivity={"enabled": False},
                                   bit_allocation={"reserve": 0.5}, data={"holdout": len},
                                   candidates={"recipes": {"a": CANDS["fp16"]}, "input_shapes": [[1, 3, 8, 8]]})
    assert flat.budget.parsed == Budget(0.02, True) and flat.candidates.input_shapes == ((1, 3, 8, 8),)
    with pytest.raises(TypeError, match="latency_round"):
        OptimizeOptions.from_kwargs(latency_round=3)
    with pytest.raises(ValueError, match="rouds"):
        OptimizeOptions(latency={"rouds": 3})
    with pytest.raises(ValueError, match="max_drop must be"):
        OptimizeOptions(budget={"max_drop": "one percent"})
    with pytest.raises(ValueError, match="min_speedup must be >= 1.0"):
        OptimizeOptions(latency={"min_speedup": 0.9})


@pytest.fixture
def calib(tiny_cnn_path, calib_feeds):
    return CalibrationData(calib_feeds(tiny_cnn_path, 4))


def test_chooses_fastest_within_budget(tiny_cnn_path, calib, tmp_path):
    metrics = {"fp32_optimized": 0.90, "dynamic_int8": 0.80, "fp16": 0.895}
    lat = {"fp32": 10.0, "fp32_optimized": 9.9, "dynamic_int8": 2.0, "fp16": 6.0}
    res = _opt(tiny_cnn_path, calib, tmp_path, metrics, lat, max_drop=0.01)
    assert res.chosen.name == "fp16"                  # dynamic_int8 is faster but 0.10 below
    assert res.chosen.latency_ms < res.baseline.latency_ms
    assert res.baseline.metric - res.chosen.metric <= 0.01
    by = {c.name: c for c in res.candidates}
    assert by["broken"].error and "quantize_int4" in by["broken"].error and by["broken"].path is None
    assert not by["dynamic_int8"].within_budget
    assert res.chosen.path.is_file()


def test_never_slower_or_out_of_budget(tiny_cnn_path, calib, tmp_path):
    # every candidate is either slower than FP32, or out of budget, or within noise (< 5 %)
    metrics = {"fp32_optimized": 0.90, "dynamic_int8": 0.50, "fp16": 0.90}
    lat = {"fp32": 10.0, "fp32_optimized": 9.8, "dynamic_int8": 1.0, "fp16": 12.0}
    res = _opt(tiny_cnn_path, calib, tmp_path, metrics, lat, max_drop="1%")
    assert res.chosen.name == "fp32_optimized"
    assert "no candidate" in res.note and "faster than FP32" in res.note
    assert res.chosen.latency_ms <= res.baseline.latency_ms


def test_no_candidate_beats_fp32_returns_input(tiny_cnn_path, calib, tmp_path):
    metrics = {"fp32_optimized": 0.90, "dynamic_int8": 0.90, "fp16": 0.90}
    lat = {"fp32": 10.0, "fp32_optimized": 10.5, "dynamic_int8": 20.0, "fp16": 11.0}
    res = _opt(tiny_cnn_path, calib, tmp_path, metrics, lat)
    assert res.chosen.name == "fp32" and res.chosen.path == tiny_cnn_path
    assert "no candidate" in res.note


def test_size_only_picks_smallest_within_budget(tiny_cnn_path, calib, tmp_path):
    metrics = {"fp32_optimized": 0.90, "dynamic_int8": 0.70, "fp16": 0.899}
    lat = {"fp32": 10.0, "fp32_optimized": 10.0, "dynamic_int8": 20.0, "fp16": 30.0}
    res = _opt(tiny_cnn_path, calib, tmp_path, metrics, lat, size_only=True, max_drop=0.005)
    assert res.chosen.name == "fp16"       # slower, but smaller and within budget; dynamic is out of budget
    assert res.chosen.size_bytes < res.baseline.size_bytes


def test_relative_budget(tiny_cnn_path, calib, tmp_path):
    metrics = {"fp32_optimized": 0.90, "dynamic_int8": 0.88, "fp16": 0.80}
    lat = {"fp32": 10.0, "fp32_optimized": 10.0, "dynamic_int8": 5.0, "fp16": 5.0}
    assert _opt(tiny_cnn_path, calib, tmp_path, metrics, lat, max_drop="3%").chosen.name == "dynamic_int8"
    assert _opt(tiny_cnn_path, calib, tmp_path, metrics, lat, max_drop="2%").chosen.name != "dynamic_int8"


@pytest.mark.parametrize("text, value, relative", [("1%", 0.01, True), ("0.5 %", 0.005, True),
                                                    ("0.02", 0.02, False), (0.01, 0.01, False)])
def test_budget_parse(text, value, relative):
    b = Budget.parse(text)
    assert b.value == pytest.approx(value) and b.relative is relative


@pytest.mark.parametrize("bad", ["one percent", "-1%", -0.1])
def test_budget_rejects(bad):
    with pytest.raises(ValueError):
        Budget.parse(bad)


def test_pareto_front():
    def c(n, m, lat, s):
        x = Candidate(n, None, metric=m, latency_ms=lat, size_bytes=s)
        return x
    a, b, d, e = c("a", 1.0, 10, 100), c("b", 0.9, 5, 100), c("d", 0.9, 6, 100), c("e", 0.95, 12, 20)
    front = {x.name for x in pareto_front([a, b, d, e])}
    assert front == {"a", "b", "e"}


def test_report_json_written_by_optimize(tiny_cnn_path, calib, tmp_path):
    metrics = {"fp32_optimized": 0.90, "dynamic_int8": 0.90, "fp16": 0.90}
    lat = {"fp32": 10.0, "fp32_optimized": 10.0, "dynamic_int8": 4.0, "fp16": 11.0}
    res = _opt(tiny_cnn_path, calib, tmp_path, metrics, lat)
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    assert data["chosen"] == res.chosen.name == "dynamic_int8"


@pytest.mark.slow
def test_sensitivity_ranks_the_harmful_node(tiny_cnn_path, calib_feeds, tmp_path):
    """Per-channel QDQ on the tiny CNN hurts the Gemm head most; keeping it in float recovers."""
    feeds = calib_feeds(tiny_cnn_path, 16)
    ev = OutputFidelity(tiny_cnn_path, feeds[:8])
    res = analyze_sensitivity(tiny_cnn_path, CalibrationData(feeds), ev, {"per_channel": True}, max_evals=8,
                              work_dir=tmp_path)
    assert res.evals == 4 and len(res.groups) == 3          # conv1, conv2, fc: one node per group
    gains = [g.gain for g in res.groups]
    assert gains == sorted(gains, reverse=True)
    top = res.groups[0]
    assert top.metric == pytest.approx(res.metric_all + top.gain)
    assert res.top_nodes(1) == top.nodes or top.gain <= 0
    # grouping kicks in when there are more nodes than evaluations
    res2 = analyze_sensitivity(tiny_cnn_path, CalibrationData(feeds), ev, {"per_channel": True}, max_evals=2,
                               refine_evals=0, work_dir=tmp_path)
    assert len(res2.groups) == 2 and sum(len(g.nodes) for g in res2.groups) == 3


def test_sensitivity_refines_the_best_block_into_nodes(tiny_cnn_path, calib_feeds, tmp_path):
    """Two blocks ([conv1, conv2], [fc]); the metric counts Convs left in float, so the conv
    block helps and is split into its two nodes, each worth one."""
    import onnx

    def float_convs(path):
        m = onnx.load(str(path))
        inits = {i.name for i in m.graph.initializer}
        return float(sum(1 for n in m.graph.node if n.op_type == "Conv" and n.input[1] in inits))

    feeds = calib_feeds(tiny_cnn_path, 8)
    res = analyze_sensitivity(tiny_cnn_path, CalibrationData(feeds), float_convs, {"per_channel": True},
                              max_evals=2, refine_evals=2, work_dir=tmp_path)
    assert res.metric_all == 0.0 and res.evals == 1 + 2 + 2
    assert res.groups[0].gain == 2.0 and len(res.groups[0].nodes) == 2
    singles = sorted((g.nodes[0], g.gain) for g in res.groups
                     if len(g.nodes) == 1 and g.nodes[0] in res.groups[0].nodes)
    assert [gain for _, gain in singles] == [1.0, 1.0]


def test_tail_nodes_of_yolox_head(yolox_path):
    """The decode head after YOLOX's last convs (score sigmoids, concats, reshape, transpose)."""
    import collections

    import onnx

    from sdk.compress.sensitivity import tail_nodes

    ops = {n.name: n.op_type for n in onnx.load(str(yolox_path)).graph.node}
    tail = tail_nodes(yolox_path)
    assert collections.Counter(ops[n] for n in tail) == {"Sigmoid": 6, "Concat": 4, "Reshape": 3, "Transpose": 1}


def test_tail_nodes_empty_when_output_is_weighted(tiny_cnn_path):
    from sdk.compress.sensitivity import tail_nodes

    assert tail_nodes(tiny_cnn_path) == []


def test_choose_needs_consistent_wins():
    from sdk.compress.results import choose

    base = Candidate("fp32", None, metric=1.0, latency_ms=10.0, size_bytes=100)
    noisy = Candidate("noisy", None, metric=1.0, latency_ms=6.0, size_bytes=50, within_budget=True, win_rate=0.6,
                      speedup=10 / 6, delta=0.0, size_ratio=2.0)
    steady = Candidate("steady", None, metric=1.0, latency_ms=8.0, size_bytes=50, within_budget=True, win_rate=1.0,
                       speedup=1.25, delta=0.0, size_ratio=2.0)
    assert choose(base, [noisy, steady], size_only=False, min_speedup=1.05)[0] is steady
    chosen, note = choose(base, [noisy], size_only=False, min_speedup=1.05)
    assert chosen is base and "no candidate" in note


def test_confirmation_drops_a_winner_that_does_not_hold_up(monkeypatch, tmp_path):
    """The screen's fastest is re-measured alone against FP32; if it is not faster there, the
    next is tried; if none holds up, FP32 is returned."""
    import sdk.compress.measure as measure
    from sdk.bench import LatencyComparison
    from sdk.compress.results import choose

    def cand(name, lat):
        c = Candidate(name, Recipe([]), path=tmp_path / f"{name}.onnx", metric=0.9, latency_ms=lat)
        c.within_budget, c.win_rate, c.size_bytes, c.delta = True, 1.0, 100, 0.0
        c.speedup, c.size_ratio = 10.0 / lat, 1.0
        return c

    base = cand("fp32", 10.0)
    base.recipe = None
    a, b = cand("a", 4.0), cand("b", 6.0)
    truth = {"fp32": 10.0, "a": 11.0, "b": 5.0}           # a was a fluke of the screen
    calls = []

    def fake_rounds(paths, feeds, target, rounds, iters, progress, **kw):
        calls.append(sorted(paths))
        return LatencyComparison({n: [truth[n]] * rounds for n in paths}, {n: [0.0] * rounds for n in paths})

    monkeypatch.setattr(measure, "compare_latency", fake_rounds)
    chosen, note = choose(base, [a, b], False, 1.05)
    assert chosen is a
    chosen, note = measure.confirm(base, [a, b], chosen, note, {}, "cpu", 9, 10, 1.05, False)
    assert chosen is b and calls == [["a", "fp32"], ["b", "fp32"]]
    assert "confirmed alone against FP32: 2.00x" in note and "a (0.91x)" in note
    assert a.confirmed == {"speedup": 10.0 / 11.0, "low": 10.0 / 11.0, "high": 10.0 / 11.0, "win_rate": 0.0}

    truth["b"] = 12.0
    chosen, note = measure.confirm(base, [a, b], a, "", {}, "cpu", 9, 10, 1.05, False)
    assert chosen is base and "returning the FP32 model" in note


def test_candidate_set_follows_the_isa(tiny_cnn_path, tiny_mlp_path):
    """Combinations known to be slow or lossy on an ISA are skipped, each with its reason."""
    from types import SimpleNamespace

    from sdk.compress.candidates import candidate_set

    vnni = SimpleNamespace(isa={"avx2": True, "avx512f": True, "avx512_vnni": True}, machine="x86_64")
    avx2 = SimpleNamespace(isa={"avx2": True}, machine="x86_64")
    arm = SimpleNamespace(isa={"neon": True}, machine="aarch64")
    cs = candidate_set(tiny_cnn_path, "cpu", vnni)
    assert cs.profile == "vnni"
    steps = [st for r in cs.recipes.values() for st in r.to_list()]
    assert not any(st.get("reduce_range") for st in steps) and not any(st.get("types") == "U8U8" for st in steps)
    assert {"dynamic_int8", "static_*_rr (reduce_range)", "static_*_u8u8"} <= {x["name"] for x in cs.skipped}
    assert all(x["reason"] for x in cs.skipped)
    steps = [st for r in candidate_set(tiny_cnn_path, "cpu", avx2).recipes.values() for st in r.to_list()
             if st["pass"] in ("quantize_static", "quantize_int8") and st.get("types") == "U8S8"]
    assert steps and all(st["reduce_range"] for st in steps)          # no VNNI: 7-bit weights
    steps = [st for r in candidate_set(tiny_cnn_path, "cpu", arm).recipes.values() for st in r.to_list()
             if st["pass"] in ("quantize_static", "quantize_int8")]
    assert steps and all(st["types"] == "S8S8" for st in steps)
    assert "dynamic_int8" in candidate_set(tiny_mlp_path, "cpu", vnni).recipes   # MatMul weights: worth trying
