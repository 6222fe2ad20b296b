"""SiLU -> ReLU swap and its distillation: the graph rewrite, the pass, its cache, the INT8 graph."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.compress import Recipe, Workspace
from sdk.compress.relu_swap import silu_pairs, swap_silu_for_relu
from sdk.errors import CompressionError


def _silu_net(seed: int = 0, hw: tuple[int, int] = (32, 48), layers: int = 2) -> onnx.ModelProto:
    """``layers`` x (Conv 3x3 -> SiLU), 8 channels, then Conv(8->6) -> Sigmoid (a graph-output
    Sigmoid that is *not* a SiLU); output [1, 6, h, w]."""
    rng = np.random.default_rng(seed)
    shapes = [(f"w{i}", (8, 3 if i == 0 else 8, 3, 3)) for i in range(layers)] + [(f"w{layers}", (6, 8, 1, 1))]
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.3).astype(np.float32), n) for n, s in shapes]
    inits += [numpy_helper.from_array((rng.standard_normal(s[0]) * 0.1).astype(np.float32), f"b{i}")
              for i, (_, s) in enumerate(shapes)]
    nodes = []
    x = "images"
    for i in range(layers):
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1] * 4, name=f"conv{i}"),
                  helper.make_node("Sigmoid", [f"c{i}"], [f"s{i}"], name=f"sig{i}"),
                  helper.make_node("Mul", [f"c{i}", f"s{i}"], [f"a{i}"], name=f"mul{i}")]
        x = f"a{i}"
    nodes += [helper.make_node("Conv", [x, f"w{layers}", f"b{layers}"], ["c_out"], name="conv_out"),
              helper.make_node("Sigmoid", ["c_out"], ["output"], name="head_sigmoid")]
    h, w = hw
    g = helper.make_graph(nodes, "silu", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 6, h, w])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def _run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]


def test_swap_replaces_each_silu_by_one_relu_and_leaves_other_sigmoids():
    m = _silu_net()
    assert [(s.name, mul.name) for s, mul in silu_pairs(m)] == [("sig0", "mul0"), ("sig1", "mul1")]
    r, swapped = swap_silu_for_relu(m)
    assert swapped == ["a0", "a1"]
    ops = [n.op_type for n in r.graph.node]
    assert ops.count("Relu") == 2 and ops.count("Sigmoid") == 1 and "Mul" not in ops
    onnx.checker.check_model(r)
    assert len(m.graph.node) == 8                     # the input model is not touched
    # the swapped graph computes ReLU where the original computed SiLU
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 48)).astype(np.float32)
    ref = m.graph.node
    assert ref[1].op_type == "Sigmoid"
    w = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(x)
    t = F.relu(F.conv2d(t, torch.from_numpy(w["w0"]), torch.from_numpy(w["b0"]), padding=1))
    t = F.relu(F.conv2d(t, torch.from_numpy(w["w1"]), torch.from_numpy(w["b1"]), padding=1))
    t = torch.sigmoid(F.conv2d(t, torch.from_numpy(w["w2"]), torch.from_numpy(w["b2"])))
    np.testing.assert_allclose(_run(r, x), t.numpy(), rtol=1e-4, atol=1e-5)


def test_a_sigmoid_read_twice_is_not_a_silu():
    m = _silu_net()
    m.graph.output.append(helper.make_tensor_value_info("s0", TensorProto.FLOAT, None))
    assert [s.name for s, _ in silu_pairs(m)] == ["sig1"]


def _frames(n: int = 4, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (60, 90, 3), dtype=np.uint8) for _ in range(n)]


def test_distilled_student_gets_closer_to_the_teacher_and_is_trained_once(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import sdk.compress.relu_distill as rd
    from sdk.compress.frames import FrameCalibration

    m = _silu_net()
    src = tmp_path / "silu.onnx"
    onnx.save(m, str(src))
    calib = FrameCalibration(_frames(), (32, 48), scale=255.0)
    calls = []
    real = rd.distill_relu
    monkeypatch.setattr(rd, "distill_relu", lambda *a, **k: calls.append(1) or real(*a, **k))
    ws = Workspace(calib)
    step = {"pass": "relu_distill", "steps": 60, "lr": 3e-3, "batch_size": 2, "anneal": 0.0}
    res = Recipe([step]).apply(src, tmp_path / "student.onnx", workspace=ws)
    rep = res.reports[next(iter(res.reports))]
    assert rep["swapped"] == 2 and rep["augmented_frames"] == 4 and rep["trained_at"] == [32, 48]
    assert rep["output_loss"] == "mse"          # [1, 6, h, w] is not a detector layout
    assert rep["loss_features"][1] < rep["loss_features"][0]
    student = onnx.load(str(res.path))
    x = calib.for_model(src)[0]["images"]
    ref = _run(m, x)
    err = lambda mm: float(np.mean((_run(mm, x) - ref) ** 2))
    assert err(student) < err(swap_silu_for_relu(m)[0])
    # the same weights and config in the same workspace: no second training
    Recipe([{"pass": "fix_input_shape", "shape": [1, 3, 32, 48]}, step]).apply(src, tmp_path / "s2.onnx",
                                                                                workspace=ws)
    assert len(calls) == 1
    # annealed (the default): the student starts as the teacher and still ends a ReLU network closer to it
    annealed = Recipe([{**step, "anneal": 0.7, "lr": 1e-3}]).apply(src, tmp_path / "s3.onnx", workspace=ws).path
    a = onnx.load(str(annealed))
    assert [n.op_type for n in a.graph.node].count("Relu") == 2
    assert err(a) < err(swap_silu_for_relu(m)[0])


def test_relu_distill_refuses_a_model_without_silu(tmp_path):
    pytest.importorskip("torch")
    from sdk.compress.frames import FrameCalibration

    r, _ = swap_silu_for_relu(_silu_net())
    p = tmp_path / "relu.onnx"
    onnx.save(r, str(p))
    with pytest.raises(CompressionError, match="no SiLU"):
        Recipe([{"pass": "relu_distill", "steps": 1}]).apply(p, tmp_path / "o.onnx",
                                                             calib=FrameCalibration(_frames(1), (32, 48)))


def test_swapped_int8_graph_runs_integer_convs_without_sigmoid_or_mul(tmp_path):
    """The point of the swap: after quantize_int8, onnxruntime's optimized graph is QLinearConvs
    with the ReLUs folded in; no QLinearSigmoid / QLinearMul is left for the SiLUs."""
    from sdk.compress.frames import FrameCalibration

    r, _ = swap_silu_for_relu(_silu_net())
    p = tmp_path / "relu.onnx"
    onnx.save(r, str(p))
    q = Recipe([{"pass": "quantize_int8"}]).apply(p, tmp_path / "q.onnx",
                                                 calib=FrameCalibration(_frames(), (32, 48))).path
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(q), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    assert ops.count("QLinearConv") == 3
    assert "Relu" not in ops and "QLinearMul" not in ops and ops.count("QLinearSigmoid") <= 1


def _image_folder(path, n: int = 6):
    import cv2

    path.mkdir()
    for i, im in enumerate(_frames(n)):
        cv2.imwrite(str(path / f"f{i}.png"), im)
    return path


def test_cli_relu_distill_adds_the_relu_student_candidate(tmp_path, capsys):
    """`edgewise optimize --relu-distill --distill-steps N`: the ReLU-student INT8 candidate is
    built (relu_distill then quantize_int8), judged and reported next to the given recipe."""
    pytest.importorskip("torch")
    import json

    from sdk.cli.main import main

    model = tmp_path / "silu8.onnx"
    onnx.save(_silu_net(layers=8), str(model))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- pass: optimize_graph\n")
    rc = main(["optimize", str(model), "--calib", str(_image_folder(tmp_path / "imgs")), "--image-scale", "255",
               "--recipe", str(recipe), "--relu-distill", "--distill-steps", "4", "--no-holdout",
               "--max-drop", "0.5", "--out", str(tmp_path / "b"), "--json", "--no-progress"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    relu = next(c for c in data["candidates"] if c["name"] == "relu_int8")
    assert relu.get("error") is None
    assert [s["pass"] for s in relu["recipe"]] == ["relu_distill", "quantize_int8"]
    assert relu["recipe"][0]["steps"] == 4


def test_cli_relu_distill_on_a_model_without_silu_says_why(tiny_cnn_path, tmp_path, capsys):
    import json

    from sdk.cli.main import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text("- pass: optimize_graph\n")
    rc = main(["optimize", str(tiny_cnn_path), "--calib", str(_image_folder(tmp_path / "imgs")), "--image-scale",
               "255", "--recipe", str(recipe), "--relu-distill", "--no-holdout", "--out", str(tmp_path / "b"),
               "--json", "--no-progress"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert not any(c["name"].endswith("relu_int8") for c in data["candidates"])
    assert any("SiLU" in s["reason"] for s in data["skipped"])
