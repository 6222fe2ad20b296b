"""sdk.bench: latency, memory, model statistics, energy, benchmark_model."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from sdk.bench import (
    BenchReport,
    EnergyMeter,
    EnergyReading,
    ModelStats,
    benchmark_model,
    measure_latency,
    model_stats,
    peak_memory_bytes,
)
from sdk.bench.energy import rapl_delta_uj
from sdk.bench.memory import RssTracker
from sdk.errors import ModelLoadError
from sdk.runtime import EngineOptions, SessionOptions


def test_measure_latency_counts_calls():
    calls = []
    stats = measure_latency(lambda: calls.append(1), warmup=3, iters=20)
    assert len(calls) == 23
    assert stats.count == 20
    assert 0 <= stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms
    assert stats.throughput_per_s > 0
    with pytest.raises(ValueError):
        measure_latency(lambda: None, iters=0)


def test_conv_model_params_and_flops_exact(conv_model_path):
    s = model_stats(conv_model_path)
    assert s.params == 216 + 8 + 2048 * 10 + 10  # the int64 reshape target is not a parameter
    assert s.flops_by_op == {"Conv": 2 * 8 * 16 * 16 * 3 * 3 * 3, "Gemm": 2 * 2048 * 10}
    assert s.flops == 151552
    assert s.op_histogram == {"Conv": 1, "Relu": 1, "Reshape": 1, "Gemm": 1}
    assert s.opset == 17 and s.producer == "edgewise-tests"
    assert s.size_bytes == conv_model_path.stat().st_size
    assert ModelStats.model_validate_json(s.model_dump_json()) == s


def test_flops_need_shapes(dynamic_batch_model_path):
    s = model_stats(dynamic_batch_model_path)
    assert s.flops is None and s.unresolved_ops == 1
    s4 = model_stats(dynamic_batch_model_path, {"x": [4, 8]})
    assert s4.flops == 2 * 4 * 8 * 3
    with pytest.raises(ValueError, match="model's inputs are"):
        model_stats(dynamic_batch_model_path, {"nope": [1, 8]})


def test_size_includes_external_data(conv_model_path, tmp_path):
    m = onnx.load(str(conv_model_path))
    out = tmp_path / "ext.onnx"
    onnx.save(m, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=0)
    s = model_stats(out)
    assert s.size_bytes == out.stat().st_size + (tmp_path / "ext.data").stat().st_size
    assert s.params == 20714 and s.flops == 151552


def test_model_stats_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"hello, this is not a model")
    with pytest.raises(ModelLoadError, match="bad.onnx"):
        model_stats(bad)


def test_rapl_wraparound():
    assert rapl_delta_uj(100, 250, 1000) == 150
    assert rapl_delta_uj(900, 50, 999) == 150  # wrapped once at max_energy_range_uj
    assert rapl_delta_uj(900, 50, None) == 0


def test_energy_estimate_labelled(tmp_path):
    meter = EnergyMeter(watts_per_core=10.0, powercap_root=tmp_path)  # an empty powercap: no RAPL
    with meter:
        sum(i * i for i in range(200_000))
    r = meter.reading(inferences=4)
    assert isinstance(r, EnergyReading) and r.inferences == 4
    assert r.source == "estimate" and "assumed" in r.note and "10 W" in r.note
    assert r.joules_per_inference is not None and r.joules_per_inference > 0
    assert "(estimate)" in str(r)


def test_energy_reads_fake_rapl(tmp_path):
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (tmp_path / "intel-rapl:0:0").mkdir()  # a sub-zone: must not be double counted
    (tmp_path / "intel-rapl:0:0" / "energy_uj").write_text("5")
    (zone / "energy_uj").write_text("1000000")
    (zone / "max_energy_range_uj").write_text("262143328850")
    meter = EnergyMeter(powercap_root=tmp_path).start()
    (zone / "energy_uj").write_text("3000000")
    meter.stop()
    r = meter.reading(inferences=2)
    assert r.source == "rapl" and r.joules_total == pytest.approx(2.0) and r.joules_per_inference == pytest.approx(1.0)


def test_energy_permission_denied_falls_back(tmp_path, monkeypatch):
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "energy_uj").write_text("1")
    from sdk.bench import energy

    def deny(z):
        raise PermissionError("root only")

    monkeypatch.setattr(energy, "_read_uj", deny)
    meter = EnergyMeter(powercap_root=tmp_path)
    with meter:
        pass
    r = meter.reading()
    assert r.source == "estimate" and "not readable" in r.note


def test_memory():
    peak = peak_memory_bytes()
    assert peak is None or peak > 2**20
    import gc
    import mmap

    # the tracker measures the whole process: let earlier tests' garbage go first, so memory
    # freed during the span does not hide the allocation; and map fresh pages directly, since
    # malloc may hand back heap memory that earlier tests left resident (RSS would not move)
    gc.collect()
    with RssTracker() as t:
        block = mmap.mmap(-1, 128 * 2**20)
        np.frombuffer(block, dtype=np.uint8)[:] = 1  # 128 MiB touched
    block.close()
    if t.delta_bytes is not None and t.isolated:
        assert t.delta_bytes >= 32 * 2**20


def test_benchmark_model_tiny(conv_model_path):
    rep = benchmark_model(conv_model_path, EngineOptions(session=SessionOptions(intra_op_threads=1)),
                          iters=20, warmup=2)
    assert rep.latency.count == 20 and rep.throughput_per_s > 0
    assert rep.providers == ["CPUExecutionProvider"]
    assert rep.params == 20714 and rep.flops == 151552 and rep.input_shapes == {"x": [1, 3, 16, 16]}
    assert rep.energy.source in ("rapl", "estimate")
    assert rep.threads == 1
    again = BenchReport.model_validate(json.loads(rep.model_dump_json()))
    assert again.latency == rep.latency
    table = rep.table()
    assert "latency p50" in table and ("(estimate)" in table or "(RAPL)" in table)


def test_benchmark_dynamic_batch_with_shapes(dynamic_batch_model_path):
    rep = benchmark_model(dynamic_batch_model_path, iters=5, warmup=0, input_shapes={"x": [4, 8]})
    assert rep.input_shapes == {"x": [4, 8]} and rep.flops == 2 * 4 * 8 * 3


def test_benchmark_accepts_bundle_like(conv_model_path):
    class FakeManifest:
        name, version = "conv-test", "0.1.0"

    class FakeBundle:  # duck-typed: anything with model_path("model")
        manifest = FakeManifest()

        def model_path(self, role):
            assert role == "model"
            return conv_model_path

    rep = benchmark_model(FakeBundle(), iters=3, warmup=0)
    assert rep.model == "conv-test 0.1.0" and rep.params == 20714


def test_benchmark_silero_with_feeds(silero_vad_path):
    feeds = {"input": np.zeros((1, 512), np.float32), "state": np.zeros((2, 1, 128), np.float32),
             "sr": np.array(16000, dtype=np.int64)}
    rep = benchmark_model(silero_vad_path, iters=10, warmup=1, feeds=feeds)
    assert rep.input_shapes == {"input": [1, 512], "state": [2, 1, 128], "sr": []}
    assert rep.params > 100_000


@pytest.mark.parametrize("shape, expected", [
    ([1, 3, 416, 416], [1, 3, 416, 416]),
    (["batch", 3, "h", "w"], [1, 3, 640, 640]),
    ([None, None, None, 3], [1, 640, 640, 3]),
    ([None, None], [1, 512]),
    ([2, None, 128], [2, 1, 128]),
    ([], []),
])
def test_default_shape(shape, expected):
    from sdk.bench import default_shape
    from sdk.runtime import TensorSpec

    assert default_shape(TensorSpec(name="a", dtype="float32", shape=shape)) == expected
    assert default_shape(TensorSpec(name="a", dtype="float32", shape=shape), {"a": [7]}) == [7]
