"""sdk.bench.compare_latency: interleaved rounds, paired speedup intervals, CPU time; file size
with external data; energy per inference."""
from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from sdk.bench import LatencyComparison, compare_latency, energy_per_inference, model_file_size, speedup_interval


def test_speedup_interval_is_paired_and_seeded():
    base = [10.0, 20.0, 10.0, 20.0, 10.0, 20.0, 10.0]      # load swings 2x between rounds...
    cand = [5.0, 10.0, 5.0, 10.0, 5.0, 10.0, 5.0]           # ...the paired ratio stays 2.0
    assert speedup_interval(base, cand) == (2.0, 2.0, 2.0)
    noisy = [5.0, 12.0, 4.0, 10.0, 6.0, 9.0, 5.5]
    med, lo, hi = speedup_interval(base, noisy)
    assert lo <= med <= hi and (med, lo, hi) == speedup_interval(base, noisy)
    with pytest.raises(ValueError, match="same number"):
        speedup_interval([1.0], [1.0, 2.0])


def test_comparison_reads_its_rounds():
    cmp = LatencyComparison({"a": [10.0, 12.0, 11.0], "b": [5.0, 13.0, 5.5]}, {"a": [9.0] * 3, "b": [4.0] * 3})
    assert cmp.median("a") == 11.0 and cmp.cpu_median("b") == 4.0
    assert cmp.win_rate("b", "a") == pytest.approx(2 / 3)
    assert cmp.speedup("a", "b")[0] == pytest.approx(2.0)
    assert cmp.medians() == {"a": 11.0, "b": 5.5}


def test_compare_latency_interleaves_every_model(conv_model_path, tmp_path):
    copy = tmp_path / "copy.onnx"
    shutil.copyfile(conv_model_path, copy)
    m = onnx.load(str(conv_model_path))
    shape = [d.dim_value or 1 for d in m.graph.input[0].type.tensor_type.shape.dim]
    feeds = {m.graph.input[0].name: np.zeros(shape, np.float32)}
    cmp = compare_latency({"fp32": conv_model_path, "copy": copy}, feeds, rounds=4, iters=2, min_round_ms=1.0,
                          sessions=2)
    assert set(cmp.wall) == {"fp32", "copy"} and all(len(v) == 4 for v in cmp.wall.values())
    assert all(x > 0 for v in cmp.wall.values() for x in v) and all(len(v) == 4 for v in cmp.cpu.values())
    med, lo, hi = cmp.speedup("fp32", "copy")
    assert lo <= med <= hi and 0.0 <= cmp.win_rate("copy", "fp32") <= 1.0
    with pytest.raises(ValueError, match="rounds and iters"):
        compare_latency({"fp32": conv_model_path}, feeds, rounds=0)


def test_file_size_and_energy(conv_model_path, tmp_path):
    out = tmp_path / "ext.onnx"
    onnx.save(onnx.load(str(conv_model_path)), str(out), save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext.data", size_threshold=0)
    assert model_file_size(out) == out.stat().st_size + (tmp_path / "ext.data").stat().st_size
    assert model_file_size(conv_model_path) == conv_model_path.stat().st_size
    m = onnx.load(str(conv_model_path))
    shape = [d.dim_value or 1 for d in m.graph.input[0].type.tensor_type.shape.dim]
    r = energy_per_inference(conv_model_path, {m.graph.input[0].name: np.zeros(shape, np.float32)}, n=3)
    assert r.source in ("rapl", "estimate") and (r.joules_per_inference is None or r.joules_per_inference >= 0)
