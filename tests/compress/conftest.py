"""Tiny ONNX models and calibration feeds shared by every ``sdk.compress`` test.

The models are built with ``onnx.helper`` from seeded random weights, so they are small
enough to quantize, prune and benchmark in well under a second, yet have the structures
the passes care about:

* ``tiny_cnn_path``: Conv-BN-Relu-Conv-Add(residual)-GlobalAveragePool-Flatten-Gemm, float32,
  input ``input`` [1,3,32,32], output ``logits`` [1,10], **opset 11** (so per-channel QDQ must
  upgrade the opset first, as with the real YOLOX / PP-OCR models).
* ``tiny_mlp_path``: MatMul+Add-Relu-MatMul+Add-Relu-MatMul+Add, input ``input`` [1,64],
  output ``logits`` [1,10], opset 17 (MatMul weights are constant initializers, so weight-only
  INT4 applies).
* ``calib_feeds(model_path, n=8, seed=0)``: a list of ``n`` input feeds dicts matching the
  model's inputs (standard-normal float32), for calibration and evaluation.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(arr), name)


def _classifier(nodes, inits, name: str, input_shape: list[int], opset: int, ir_version: int) -> onnx.ModelProto:
    """A checked model of ``nodes`` from ``input`` (``input_shape``) to 10 ``logits``."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="edgewise-tests")
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


def build_tiny_cnn(seed: int = 0, opset: int = 11) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    c = 8
    inits = [
        _init("w1", (rng.standard_normal((c, 3, 3, 3)) * 0.3).astype(np.float32)),
        _init("b1", (rng.standard_normal(c) * 0.1).astype(np.float32)),
        _init("bn_scale", (1.0 + 0.1 * rng.standard_normal(c)).astype(np.float32)),
        _init("bn_bias", (0.1 * rng.standard_normal(c)).astype(np.float32)),
        _init("bn_mean", (0.1 * rng.standard_normal(c)).astype(np.float32)),
        _init("bn_var", (1.0 + 0.1 * rng.random(c)).astype(np.float32)),
        _init("w2", (rng.standard_normal((c, c, 3, 3)) * 0.2).astype(np.float32)),
        _init("b2", (rng.standard_normal(c) * 0.1).astype(np.float32)),
        _init("fc_w", (rng.standard_normal((10, c)) * 0.5).astype(np.float32)),
        _init("fc_b", (rng.standard_normal(10) * 0.1).astype(np.float32)),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"],
                         ["bn1"], name="bn1"),
        helper.make_node("Relu", ["bn1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["res"], name="add_res"),
        helper.make_node("GlobalAveragePool", ["res"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
    ]
    return _classifier(nodes, inits, "tiny_cnn", [1, 3, 32, 32], opset, ir_version=7)


def build_tiny_mlp(seed: int = 1, opset: int = 17) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    dims = [64, 128, 128, 10]
    inits, nodes = [], []
    x = "input"
    for i, (k, n) in enumerate(itertools.pairwise(dims)):
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        b = (rng.standard_normal(n) * 0.05).astype(np.float32)
        inits += [_init(f"w{i}", w), _init(f"b{i}", b)]
        last = i == len(dims) - 2
        nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"mm{i}"], name=f"matmul{i}"))
        out = "logits" if last else f"h{i}"
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [out if last else f"a{i}"], name=f"add{i}"))
        if not last:
            nodes.append(helper.make_node("Relu", [f"a{i}"], [out], name=f"relu{i}"))
        x = out
    return _classifier(nodes, inits, "tiny_mlp", [1, 64], opset, ir_version=8)


@pytest.fixture(scope="session")
def tiny_cnn_path(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("tiny_models") / "tiny_cnn.onnx"
    onnx.save(build_tiny_cnn(), str(p))
    return p


@pytest.fixture(scope="session")
def tiny_mlp_path(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("tiny_models") / "tiny_mlp.onnx"
    onnx.save(build_tiny_mlp(), str(p))
    return p


def make_feeds(model_path: str | Path, n: int = 8, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``n`` standard-normal float32 feeds for every input of the model (dynamic dims -> 1)."""
    model = onnx.load(str(model_path), load_external_data=False)
    init_names = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(seed)
    specs = []
    for vi in model.graph.input:
        if vi.name in init_names:
            continue
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in vi.type.tensor_type.shape.dim]
        specs.append((vi.name, dims))
    return [{name: rng.standard_normal(dims).astype(np.float32) for name, dims in specs} for _ in range(n)]


@pytest.fixture(scope="session")
def calib_feeds() -> Callable[..., list[dict[str, np.ndarray]]]:
    """Factory: ``calib_feeds(model_path, n=8, seed=0)`` -> list of feeds dicts."""
    return make_feeds


@pytest.fixture(scope="session")
def ppocr_det() -> Path:
    """The PP-OCRv4 text detector shipped in rapidocr-onnxruntime (skips where it is absent)."""
    from sdk.package_files import package_file
    from tests.skips import file_or_skip

    return file_or_skip(package_file("rapidocr_onnxruntime", "models", "ch_PP-OCRv4_det_infer.onnx"),
                        "rapidocr-onnxruntime (PP-OCRv4 detector) is not installed; `make setup`")
