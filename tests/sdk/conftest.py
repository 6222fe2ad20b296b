"""Tiny ONNX models built with onnx.helper, shared by the sdk tests.

Session-scoped: each is written once to a temporary folder. Opset 17, IR version 8 so any
onnxruntime >= 1.17 loads them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.package_files import package_file
from tests.skips import file_or_skip

OPSET = 17


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_tiny_model() -> onnx.ModelProto:
    """y = x @ W + b, x: float32 [1, 4] -> y: float32 [1, 4]; W = 2*I, b = [1, 2, 3, 4]."""
    w = numpy_helper.from_array((2 * np.eye(4)).astype(np.float32), "W")
    b = numpy_helper.from_array(np.array([1, 2, 3, 4], np.float32), "b")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w, b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgewise-tests")


def make_dynamic_batch_model() -> onnx.ModelProto:
    """y = relu(x @ W), x: float32 ["batch", 8] -> y: float32 ["batch", 3]."""
    w = numpy_helper.from_array(np.arange(24, dtype=np.float32).reshape(8, 3) / 24.0, "W")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Relu", ["xw"], ["y"])],
        "dynbatch", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgewise-tests")


def make_multi_input_model() -> onnx.ModelProto:
    """image: float32 [1, 3, 8, 8], scale: float32 [1], ids: int64 ["n"]
    -> scaled = image * scale (float32 [1, 3, 8, 8]), count = Size(ids) (int64 scalar)."""
    g = helper.make_graph(
        [helper.make_node("Mul", ["image", "scale"], ["scaled"]), helper.make_node("Size", ["ids"], ["count"])],
        "multi",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8]),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [1, 3, 8, 8]),
         helper.make_tensor_value_info("count", TensorProto.INT64, [])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgewise-tests")


def make_conv_model() -> onnx.ModelProto:
    """Conv 3->8, 3x3, pad 1 on [1, 3, 16, 16] then Gemm 8*16*16 -> 10 (known params/FLOPs).

    Params: conv W 8*3*3*3 = 216 + B 8 = 224; gemm W 2048*10 = 20480 + B 10 = 20490 -> 20714.
    FLOPs (2 per MAC): conv 2*8*16*16*3*3*3 = 110592; gemm 2*2048*10 = 40960 -> 151552.
    """
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "cw"),
             numpy_helper.from_array(np.zeros(8, np.float32), "cb"),
             numpy_helper.from_array(rng.standard_normal((2048, 10)).astype(np.float32) * 0.01, "gw"),
             numpy_helper.from_array(np.zeros(10, np.float32), "gb"),
             numpy_helper.from_array(np.array([1, 2048], np.int64), "shape")]
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "cw", "cb"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Reshape", ["r", "shape"], ["f"]),
         helper.make_node("Gemm", ["f", "gw", "gb"], ["logits"])],
        "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgewise-tests")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny_models")


def _model_path_fixture(name: str, make):
    """A session fixture ``name`` giving the path of ``make()`` saved under ``models_dir``."""
    def path(models_dir) -> Path:
        return _save(make(), models_dir / f"{name.removesuffix('_model_path')}.onnx")
    return pytest.fixture(scope="session", name=name)(path)


tiny_model_path = _model_path_fixture("tiny_model_path", make_tiny_model)
dynamic_batch_model_path = _model_path_fixture("dynamic_batch_model_path", make_dynamic_batch_model)
multi_input_model_path = _model_path_fixture("multi_input_model_path", make_multi_input_model)
conv_model_path = _model_path_fixture("conv_model_path", make_conv_model)


@pytest.fixture(scope="session")
def ppocr_det_path() -> Path:
    return file_or_skip(package_file("rapidocr_onnxruntime", "models", "ch_PP-OCRv4_det_infer.onnx"),
                        "rapidocr-onnxruntime (PP-OCRv4 detector) is not installed; `make setup`")


@pytest.fixture(scope="session")
def silero_vad_path() -> Path:
    return file_or_skip(package_file("silero_vad", "data", "silero_vad.onnx"),
                        "silero-vad is not installed; `pip install --no-deps silero-vad`")


@pytest.fixture
def python_exe() -> str:
    return sys.executable
