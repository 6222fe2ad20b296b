"""Engine: signature validation, corrupt models, finiteness, latency, lifetime."""
from __future__ import annotations

import logging
from contextlib import nullcontext as does_not_raise

import numpy as np
import onnx
import pytest
from pydantic import ValidationError

from sdk.errors import EdgewiseError, InferenceError, InputValidationError, ModelLoadError
from sdk.runtime import Engine, EngineOptions, LatencyStats, SessionOptions, TensorSpec

F32 = np.float32


@pytest.fixture(scope="module")
def multi(multi_input_model_path):
    with Engine(multi_input_model_path) as eng:
        yield eng


def _good_multi():
    return {"image": np.ones((1, 3, 8, 8), F32), "scale": np.array([2.0], F32),
            "ids": np.arange(5, dtype=np.int64)}


def _with(**changes):
    feeds = _good_multi()
    for k, v in changes.items():
        if v is None:
            feeds.pop(k)
        else:
            feeds[k] = v
    return feeds


@pytest.mark.parametrize("feeds, expectation, message", [
    (_good_multi(), does_not_raise(), None),
    (_with(ids=np.arange(0, dtype=np.int64)), does_not_raise(), None),            # dynamic dim 0 is fine
    (_with(ids=np.arange(100, dtype=np.int64)), does_not_raise(), None),
    (_with(image=None), pytest.raises(InputValidationError), "missing input(s) ['image']"),
    (_with(extra=np.zeros(1, F32)), pytest.raises(InputValidationError), "unknown input name(s) ['extra']"),
    (_with(image=np.ones((1, 3, 8, 8))), pytest.raises(InputValidationError),
     "input 'image' expects float32 with shape [1, 3, 8, 8], got float64 with shape (1, 3, 8, 8)"),
    (_with(image=np.ones((1, 8, 8, 3), F32)), pytest.raises(InputValidationError),
     "input 'image' expects float32 with shape [1, 3, 8, 8], got float32 with shape (1, 8, 8, 3) (dim 1 is 8, not 3)"),
    (_with(image=np.ones((3, 8, 8), F32)), pytest.raises(InputValidationError), "rank 3 is not 4"),
    (_with(ids=np.arange(5, dtype=np.int32)), pytest.raises(InputValidationError),
     "input 'ids' expects int64 with shape [n], got int32"),
    (_with(scale=np.array([2.0, 3.0], F32)), pytest.raises(InputValidationError), "dim 0 is 2, not 1"),
    (_with(scale="2.0"), pytest.raises(InputValidationError), "expects float32"),
])
def test_signature_validation(multi, feeds, expectation, message):
    with expectation as exc:
        out = multi.run(feeds)
    if message is None:
        np.testing.assert_allclose(out["scaled"], feeds["image"] * feeds["scale"][0])
        assert int(out["count"]) == feeds["ids"].size
    else:
        assert message in str(exc.value)
        assert isinstance(exc.value, ValueError)  # InputValidationError is also a ValueError


def test_error_message_names_expected_and_got(tmp_path):
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["images"], ["y"])], "g",
                          [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 416, 416])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 416, 416])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    with Engine(m, EngineOptions(warmup=0)) as eng:
        with pytest.raises(InputValidationError) as exc:
            eng.run({"images": np.zeros((1, 416, 416, 3))})
    assert str(exc.value).startswith(
        "input 'images' expects float32 with shape [1, 3, 416, 416], got float64 with shape (1, 416, 416, 3)")


def test_run_forms_agree(tiny_model_path):
    x = np.array([[1, 2, 3, 4]], F32)
    with Engine(tiny_model_path) as eng:
        a = eng.run({"x": x})["y"]
        b = eng.run(x)["y"]
        (c,) = eng.run_list([x])
        (d,) = eng.run_list({"x": x}, output_names=["y"])
    expected = x @ (2 * np.eye(4, dtype=F32)) + np.array([1, 2, 3, 4], F32)
    for y in (a, b, c, d):
        np.testing.assert_allclose(y, expected)


def test_bare_array_needs_single_input(multi):
    with pytest.raises(InputValidationError, match="has 3 inputs"):
        multi.run(np.zeros((1, 3, 8, 8), F32))
    with pytest.raises(InputValidationError, match="expected 3 input array"):
        multi.run_list([np.zeros((1, 3, 8, 8), F32)])


def test_signature_specs(multi_input_model_path, dynamic_batch_model_path):
    with Engine(multi_input_model_path) as eng:
        assert eng.inputs == [TensorSpec(name="image", dtype="float32", shape=[1, 3, 8, 8]),
                              TensorSpec(name="scale", dtype="float32", shape=[1]),
                              TensorSpec(name="ids", dtype="int64", shape=["n"])]
        assert eng.outputs[1] == TensorSpec(name="count", dtype="int64", shape=[])
    with Engine(dynamic_batch_model_path) as eng:
        assert eng.inputs[0].shape == ["batch", 8]
        assert eng.run(np.ones((5, 8), F32))["y"].shape == (5, 3)
    spec = TensorSpec(name="a", dtype="float32", shape=[1, "n", None])
    with pytest.raises(ValidationError):
        spec.name = "b"  # frozen
    assert TensorSpec.model_validate_json(spec.model_dump_json()) == spec


def test_model_as_bytes_and_proto(tiny_model_path):
    x = np.zeros((1, 4), F32)
    proto = onnx.load(str(tiny_model_path))
    for model in (tiny_model_path.read_bytes(), proto, str(tiny_model_path)):
        with Engine(model) as eng:
            np.testing.assert_allclose(eng.run(x)["y"], [[1, 2, 3, 4]])
    with pytest.raises(TypeError, match="path, bytes or onnx.ModelProto"):
        Engine(12345)


def _corruptions(data: bytes):
    n = len(data)
    flipped = bytearray(data)
    for i in range(0, 16):  # the header: ir_version, producer, first graph bytes
        flipped[i] ^= 0xFF
    yield "truncated-half", data[: n // 2]
    yield "truncated-3", data[:3]
    yield "bit-flipped-header", bytes(flipped)
    yield "not-onnx", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    yield "empty", b""


@pytest.mark.parametrize("kind", ["truncated-half", "truncated-3", "bit-flipped-header", "not-onnx", "empty"])
def test_corrupt_model_raises_model_load_error(tmp_path, conv_model_path, kind):
    data = dict(_corruptions(conv_model_path.read_bytes()))[kind]
    bad = tmp_path / f"{kind}.onnx"
    bad.write_bytes(data)
    with pytest.raises(ModelLoadError) as exc:
        Engine(bad)
    assert str(bad) in str(exc.value)
    assert isinstance(exc.value, EdgewiseError)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        Engine(tmp_path / "nope.onnx")
    with pytest.raises(ModelLoadError, match="is a directory"):
        Engine(tmp_path)


def test_check_finite(tiny_model_path, tmp_path):
    with Engine(tiny_model_path, EngineOptions(check_finite=True)) as eng:
        with pytest.raises(InputValidationError, match="1 NaN/Inf value"):
            eng.run(np.array([[1, np.nan, 3, 4]], F32))
        eng.run(np.ones((1, 4), F32))
    with Engine(tiny_model_path) as eng:  # off by default: Inf passes through to the output
        assert np.isinf(eng.run(np.array([[np.inf, 0, 0, 0]], F32))["y"][0, 0])
    # a model whose output overflows: y = x * 1e30 * 1e30 -> inf
    from onnx import TensorProto, helper, numpy_helper

    big = numpy_helper.from_array(np.array([1e30], F32), "big")
    g = helper.make_graph([helper.make_node("Mul", ["x", "big"], ["t"]), helper.make_node("Mul", ["t", "big"], ["y"])],
                          "overflow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [big])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    with Engine(m, EngineOptions(check_finite=True)) as eng:
        with pytest.raises(InferenceError, match="output 'y'.*NaN/Inf"):
            eng.run(np.array([1.0], F32))
        eng.run(np.array([0.0], F32))


def test_latency_counts(tiny_model_path):
    with Engine(tiny_model_path, EngineOptions(warmup=3, latency_window=8)) as eng:
        assert eng.latency == LatencyStats()  # warm-up is not recorded
        x = np.zeros((1, 4), F32)
        for _ in range(5):
            eng.run(x)
        s = eng.latency
        assert s.count == 5 and 0 < s.min_ms <= s.p50_ms <= s.p90_ms <= s.p99_ms <= s.max_ms
        for _ in range(10):
            eng.run_list([x])
        assert eng.latency.count == 15  # the ring keeps 8, the count keeps counting
        eng.reset_latency()
        assert eng.latency.count == 0


def test_context_manager_closes(tiny_model_path):
    with Engine(tiny_model_path) as eng:
        assert not eng.closed
    assert eng.closed
    with pytest.raises(InferenceError, match="closed"):
        eng.run(np.zeros((1, 4), F32))
    eng.close()  # twice is fine


def test_warmup_skipped_gracefully(caplog, tmp_path):
    """A model that cannot run on zeros (Reshape to a size read from the input) still loads."""
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"]),
                           helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    with caplog.at_level(logging.INFO, logger="edgewise"):
        eng = Engine(m, EngineOptions(warmup=2))
    assert any("warm-up skipped" in r.getMessage() for r in caplog.records)
    y = eng.run({"x": np.arange(6, dtype=F32), "shape": np.array([2, 3], np.int64)})["y"]
    assert y.shape == (2, 3)
    with pytest.raises(InferenceError, match="onnxruntime failed"):
        eng.run({"x": np.arange(5, dtype=F32), "shape": np.array([2, 3], np.int64)})
    eng.close()


def test_session_options_mapping(tiny_model_path, tmp_path):
    import onnxruntime as ort

    so = SessionOptions(intra_op_threads=1, inter_op_threads=2, graph_optimization="basic",
                        execution_mode="parallel", optimized_model_path=tmp_path / "opt.onnx").to_ort()
    assert so.intra_op_num_threads == 1 and so.inter_op_num_threads == 2
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert so.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert so.optimized_model_filepath == str(tmp_path / "opt.onnx")
    with pytest.raises(ValueError):
        SessionOptions(graph_optimization="max")
    with pytest.raises(ValueError):
        EngineOptions(provider="cpu")  # misspelt key: extra="forbid"


def test_optimized_model_saved_then_used(tiny_model_path, tmp_path, caplog):
    opt = tmp_path / "tiny.opt.onnx"
    opts = EngineOptions(session=SessionOptions(optimized_model_path=opt))
    with Engine(tiny_model_path, opts) as eng:
        y1 = eng.run(np.ones((1, 4), F32))["y"]
    assert opt.is_file()
    with caplog.at_level(logging.INFO, logger="edgewise"):
        with Engine(tiny_model_path, opts) as eng:
            y2 = eng.run(np.ones((1, 4), F32))["y"]
    assert any("fast start" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(y1, y2)


def test_engine_options_providers_string():
    assert EngineOptions(providers="cuda, cpu").providers == ["cuda", "cpu"]
    with pytest.raises(ValueError):
        EngineOptions(providers=[])


def test_damaged_optimized_model_falls_back(tiny_model_path, tmp_path, caplog):
    opt = tmp_path / "stale.opt.onnx"
    opt.write_bytes(b"not a model")  # newer than the model, but unusable
    with caplog.at_level(logging.WARNING, logger="edgewise"):
        with Engine(tiny_model_path, EngineOptions(session=SessionOptions(optimized_model_path=opt))) as eng:
            np.testing.assert_allclose(eng.run(np.zeros((1, 4), F32))["y"], [[1, 2, 3, 4]])
    assert any("unusable" in r.getMessage() for r in caplog.records)


def test_spinning_can_be_turned_off(tiny_model_path):
    from sdk.runtime import Engine, EngineOptions, SessionOptions

    so = SessionOptions(allow_spinning=False)
    ort_so = so.to_ort()
    assert ort_so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with Engine(tiny_model_path, EngineOptions(session=so)) as eng:
        shape = [d if isinstance(d, int) else 1 for d in eng.inputs[0].shape]
        assert eng.run_list({eng.inputs[0].name: np.zeros(shape, np.float32)})
