"""Mixed int4/int8 weights: the bisection finds the longest passing prefix, the result
reproduces through a recipe, and optimize() offers it as a candidate."""
from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto

from sdk.compress import CalibrationData, OptimizeOptions, OutputFidelity, Recipe, optimize
from sdk.compress.bit_allocation import allocate_low_bits


def int4_count(path) -> int:
    return sum(1 for i in onnx.load(str(path)).graph.initializer if i.data_type == TensorProto.INT4)


class MinusInt4:
    """Metric = -(weights stored as int4): the floor says exactly how many may go to 4 bits."""

    name = "minus_int4"

    def __call__(self, path):
        return -float(int4_count(path))


def test_bisection_takes_the_largest_weights_up_to_the_floor(tiny_mlp_path, calib_feeds):
    calib = CalibrationData(calib_feeds(tiny_mlp_path, 8))
    res = allocate_low_bits(tiny_mlp_path, calib, MinusInt4(), floor=-2.0, orders=("size",))
    # weights: matmul0 64x128, matmul1 128x128, matmul2 128x10 (1280 elements)
    assert res.order == ["matmul1", "matmul0", "matmul2"]
    assert res.low_bit_nodes == ["matmul1", "matmul0"] and res.metric == -2.0
    assert [t["k"] for t in res.trials][0] == 3 and not res.trials[0]["ok"]
    assert all(t["ok"] == (t["metric"] >= -2.0) for t in res.trials)


def test_nothing_fits_when_even_int8_misses_the_floor(tiny_mlp_path, calib_feeds):
    calib = CalibrationData(calib_feeds(tiny_mlp_path, 8))
    res = allocate_low_bits(tiny_mlp_path, calib, MinusInt4(), floor=0.5, orders=("size",))
    assert res.low_bit_nodes == [] and res.metric is None


def test_both_orders_keep_the_bigger_saving_and_the_recipe_reproduces(tiny_mlp_path, calib_feeds, tmp_path):
    calib = CalibrationData(calib_feeds(tiny_mlp_path, 256))
    ev = OutputFidelity(tiny_mlp_path, calib_feeds(tiny_mlp_path, 32, seed=3), metric="cosine")
    floor = 0.99
    res = allocate_low_bits(tiny_mlp_path, calib, ev, floor=floor, min_elements=1000)
    assert set(res.sensitivity) == {"matmul0", "matmul1", "matmul2"}
    assert {t["order"] for t in res.trials} <= {"size", "sensitivity"}
    assert res.low_bit_nodes, res.trials
    assert res.metric >= floor
    out = Recipe([{"pass": "quantize_weights", "low_bit_nodes": res.low_bit_nodes}]).apply(
        tiny_mlp_path, tmp_path / "mixed.onnx", calib=calib).path
    assert int4_count(out) == len(res.low_bit_nodes)
    assert abs(ev(out) - res.metric) < 1e-6


def test_optimize_adds_the_mixed_candidate_and_reports_it(tiny_mlp_path, calib_feeds, tmp_path, monkeypatch):
    calib = CalibrationData(calib_feeds(tiny_mlp_path, 8))
    # budget 2 int4 weights; a quarter of it in reserve -> floor -1.5 -> one weight at int4
    import sdk.compress.quantize_weights as qw

    gathered = []
    real = qw.collect_layer_stats
    monkeypatch.setattr(qw, "collect_layer_stats", lambda *a, **k: gathered.append(1) or real(*a, **k))
    opts = OptimizeOptions(out_dir=tmp_path / "o", budget={"max_drop": 2.0, "size_only": True},
                           candidates={"recipes": {"fp16": Recipe([{"pass": "fp16"}])}},
                           bit_allocation={"enabled": True},
                           latency={"measure": lambda paths, feeds: {n: 1.0 for n in paths}, "energy": False})
    res = optimize(tiny_mlp_path, calib, MinusInt4(), opts)
    names = [c.name for c in res.candidates]
    assert "weights_mixed_int4" in names
    mixed = next(c for c in res.candidates if c.name == "weights_mixed_int4")
    assert mixed.metric == -1.0 and mixed.within_budget
    assert res.bit_allocation["low_bit_nodes"] == mixed.recipe.to_list()[0]["low_bit_nodes"]
    assert len(gathered) == 1     # the search's workspace: the allocation and the candidate share the statistics
    assert mixed.report["quantize_weights"]["int4_nodes"] == mixed.recipe.to_list()[0]["low_bit_nodes"]
    report = (tmp_path / "o" / "report.md").read_text()
    assert "## Bit allocation" in report
    assert json.loads((tmp_path / "o" / "report.json").read_text())["bit_allocation"]["floor"] == -1.5
    with pytest.raises(ValueError, match="allocation_reserve"):
        optimize(tiny_mlp_path, calib, MinusInt4(), candidates={}, out_dir=tmp_path / "p", allocation_reserve=1.0,
                 latency_fn=lambda paths, feeds: {n: 1.0 for n in paths}, energy=False)
