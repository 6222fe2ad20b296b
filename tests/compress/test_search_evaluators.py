"""Evaluators (top-1, AUC, output fidelity, detection agreement + YOLOX decode) and If specialization."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import sdk.compress as sc
from sdk.compress.evaluators import roc_auc
from sdk.compress.graph_passes import SpecializeInputs
from sdk.detect import match_counts
from sdk.errors import CompressionError
from tests.compress.onnx_models import save_graph


def _labels_from_model(path, X):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"input": X[i:i + 1]})[0] for i in range(len(X))])


def test_top1_and_auc(tiny_mlp_path):
    X = np.random.default_rng(3).standard_normal((40, 64)).astype(np.float32)
    logits = _labels_from_model(tiny_mlp_path, X)
    y = logits.argmax(1)
    assert sc.Top1Accuracy(X, y, batch_size=8)(tiny_mlp_path) == 1.0     # fixed batch 1 handled
    y_wrong = (y + 1) % 10
    assert sc.Top1Accuracy(X, y_wrong)(tiny_mlp_path) == 0.0
    yb = (logits[:, 1] > logits[:, 0]).astype(int)
    assert sc.AUC(X, yb, positive_index=1)(tiny_mlp_path) == 1.0
    with pytest.raises(ValueError, match="same length"):
        sc.Top1Accuracy(X, y[:3])


def test_roc_auc_ties():
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.1, 0.9])) == pytest.approx(0.875)
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(np.array([1, 1]), np.array([0.1, 0.2]))


def test_output_fidelity(tiny_cnn_path, calib_feeds, tmp_path):
    feeds = calib_feeds(tiny_cnn_path, 4)
    cos = sc.OutputFidelity(tiny_cnn_path, feeds)
    mx = sc.OutputFidelity(tiny_cnn_path, feeds, metric="max_abs")
    assert cos(tiny_cnn_path) == pytest.approx(1.0) and mx(tiny_cnn_path) == 0.0
    q = sc.QuantizeDynamic().run(tiny_cnn_path, tmp_path / "q.onnx", sc.PassContext()).path
    assert 0.9 < cos(q) < 1.0 and mx(q) < 0.0
    assert cos.name == "fidelity_cosine" and cos.size_text() == "4 samples"   # the report names the data


def _sigmoid_map(path, extra: str = "none"):
    """y = Sigmoid(x) on a 1x64 input, like a probability map; ``extra`` adds to it:
    "rounding" 1e-7 * x (a kernel's absolute error near 0), "speaks" 0.5 where x < -15."""
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"])]
    inits = []
    if extra == "rounding":
        inits = [onnx.numpy_helper.from_array(np.float32(1e-7), "k")]
        nodes += [helper.make_node("Mul", ["x", "k"], ["e"]), helper.make_node("Add", ["s", "e"], ["y"])]
    elif extra == "speaks":
        inits = [onnx.numpy_helper.from_array(np.float32(-15), "t"), onnx.numpy_helper.from_array(np.float32(0.5), "h")]
        nodes += [helper.make_node("Less", ["x", "t"], ["m"]), helper.make_node("Cast", ["m"], ["mf"], to=1),
                  helper.make_node("Mul", ["mf", "h"], ["e"]), helper.make_node("Add", ["s", "e"], ["y"])]
    else:
        nodes += [helper.make_node("Identity", ["s"], ["y"])]
    g = helper.make_graph(nodes, "map", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], inits)
    return save_graph(g, path)


def test_output_fidelity_does_not_score_rounding_noise_of_a_silent_output(tmp_path):
    """Where the reference's output is ~0 (a text detector on a frame without text), the cosine
    measures rounding: such feeds are left out, unless the candidate speaks there."""
    rng = np.random.default_rng(0)
    live = [{"x": rng.normal(0, 2, (1, 64)).astype(np.float32)} for _ in range(3)]
    silent = [{"x": rng.uniform(-18, -16.5, (1, 64)).astype(np.float32)} for _ in range(5)]  # sigmoid < 1e-7
    ref = _sigmoid_map(tmp_path / "ref.onnx")
    rounding, speaks = _sigmoid_map(tmp_path / "r.onnx", "rounding"), _sigmoid_map(tmp_path / "s.onnx", "speaks")
    ev = sc.OutputFidelity(ref, live + silent)
    assert ev.silent == 5 and ev.size_text() == "8 samples, 5 not scored (reference outputs below 1e-06)"
    assert ev(rounding) == pytest.approx(1.0, abs=1e-6)
    a, b = (ort.InferenceSession(str(m), providers=["CPUExecutionProvider"]).run(None, silent[0])[0].ravel()
            for m in (ref, rounding))
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) < 0.5   # what a silent feed would have scored
    assert ev(speaks) == pytest.approx(3 / 8, abs=1e-6)         # 0 on each silent feed it speaks on
    with pytest.raises(ValueError, match="below 1e-06 on all 5 samples: nothing to compare"):
        sc.OutputFidelity(ref, silent)
    assert sc.OutputFidelity(ref, silent, metric="max_abs")(rounding) < 0     # max_abs scores everything


def _det(boxes, classes):
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return sc.Detections(b, np.ones(len(b), np.float32), np.asarray(classes, np.int64))


def test_match_counts_greedy_per_class():
    ref = _det([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], [0, 0, 1])
    cand = _det([[1, 1, 10, 10], [21, 21, 40, 40], [50, 50, 60, 60], [70, 70, 80, 80]], [0, 0, 2, 2])
    assert match_counts(ref, cand) == (2, 2, 1)          # class mismatch is a miss and a false alarm
    assert match_counts(ref, ref) == (3, 0, 0)
    assert match_counts(sc.Detections.empty(), sc.Detections.empty()) == (0, 0, 0)


def _yolox_like_model(path, boxes_logits):
    """A 'detector' whose raw output is a constant [1, 21, 85] tensor (input 1x3x32x32 unused but added)."""
    const = onnx.numpy_helper.from_array(boxes_logits.astype(np.float32), "raw")
    nodes = [helper.make_node("ReduceSum", ["images"], ["s"], keepdims=0),
             helper.make_node("Mul", ["s", "zero"], ["z"]),
             helper.make_node("Add", ["raw", "z"], ["output"])]
    g = helper.make_graph(nodes, "det", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(boxes_logits.shape))],
                          initializer=[const, onnx.numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
    m.ir_version = 7
    onnx.save(m, str(path))
    return path


def test_yolox_decoder_and_detection_agreement(tmp_path):
    # 32x32 input, strides 8/16/32 -> 16 + 4 + 1 = 21 anchors
    raw = np.zeros((1, 21, 85), np.float32)
    raw[0, 5, :5] = [0.5, 0.5, np.log(2.0), np.log(2.0), 0.9]   # anchor 5: grid (1,1) stride 8 -> centre 12
    raw[0, 5, 5 + 2] = 0.95                                       # class 2
    raw[0, 17, :5] = [0.0, 0.0, 0.0, 0.0, 0.8]                    # anchor 17: grid (1,0) stride 16
    raw[0, 17, 5 + 0] = 0.9
    dec = sc.YoloxDecoder((32, 32), score_thr=0.3)
    d = dec({"output": raw})
    assert len(d) == 2 and set(d.class_id.tolist()) == {0, 2}
    i = int(np.flatnonzero(d.class_id == 2)[0])
    assert np.allclose(d.xyxy[i], [4, 4, 20, 20]) and d.confidence[i] == pytest.approx(0.9 * 0.95)
    ref = _yolox_like_model(tmp_path / "ref.onnx", raw)
    worse = raw.copy()
    worse[0, 17, 4] = 0.1                                         # the second object is lost
    cand = _yolox_like_model(tmp_path / "cand.onnx", worse)
    images = [np.zeros((1, 3, 32, 32), np.float32)] * 3
    ev = sc.DetectionAgreement(ref, images, dec)
    assert ev(ref) == 1.0
    assert ev(cand) == pytest.approx(2 * 3 / (2 * 3 + 0 + 3))     # tp 3, fn 3 over 3 images
    with pytest.raises(ValueError, match="anchors"):
        sc.YoloxDecoder((64, 64))({"output": raw})


def _if_model(path):
    """out = If(sr == 16000) then x*2 (weights inside the branch) else x*3; plus an input sr."""
    def branch(name, k):
        w = onnx.numpy_helper.from_array(np.full((4, 4), k, np.float32), f"{name}_w")
        n = helper.make_node("MatMul", ["x", f"{name}_w"], [f"{name}_y"])
        return helper.make_graph([n], name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT,
                                                                                [1, 4])], initializer=[w])
    nodes = [helper.make_node("Constant", [], ["c16k"], value=onnx.numpy_helper.from_array(np.array(16000, np.int64))),
             helper.make_node("Equal", ["sr", "c16k"], ["is16k"]),
             helper.make_node("If", ["is16k"], ["out"], then_branch=branch("then", 2.0),
                              else_branch=branch("else", 3.0))]
    g = helper.make_graph(nodes, "ifm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
                                         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])])
    return save_graph(g, path)


def test_specialize_inputs_inlines_if(tmp_path):
    src = _if_model(tmp_path / "if.onnx")
    out = SpecializeInputs(constants={"sr": 16000}).run(src, tmp_path / "spec.onnx", sc.PassContext()).path
    ops = sc.count_ops(out)
    assert ops["If"] == 0 and ops["MatMul"] == 1
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x", "sr"]     # signature unchanged
    x = np.ones((1, 4), np.float32)
    assert np.allclose(sess.run(None, {"x": x, "sr": np.array(16000)})[0], 8.0)
    q = sc.QuantizeDynamic().run(out, tmp_path / "q.onnx", sc.PassContext()).path
    assert sc.count_ops(q)["MatMulInteger"] == 1                       # now reachable by the quantizer
    with pytest.raises(CompressionError, match="not inputs"):
        SpecializeInputs(constants={"rate": 16000}).run(src, tmp_path / "x.onnx", sc.PassContext())


def test_fix_input_shape_runs_yolox_at_16_9(yolox_path, tmp_path):
    """Rectangular inference: the 416x416 YOLOX-nano fixed to 256x416 runs, with fewer anchors."""
    import onnxruntime as ort

    from sdk.compress import FixInputShape

    out = FixInputShape(shape=[1, 3, 256, 416]).run(yolox_path, tmp_path / "rect.onnx", sc.PassContext()).path
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [1, 3, 256, 416]
    y = sess.run(None, {"images": np.zeros((1, 3, 256, 416), np.float32)})[0]
    # strides 8/16/32 over 256x416: 32*52 + 16*26 + 8*13 anchors
    assert y.shape == (1, 32 * 52 + 16 * 26 + 8 * 13, 85)


def test_fix_input_shape_refuses_a_fixed_reshape(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    from sdk.compress import FixInputShape
    from sdk.errors import CompressionError

    g = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["y"], name="flat")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 48])],
        [numpy_helper.from_array(np.array([1, 48], np.int64), "s")])
    p = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), p)
    with pytest.raises(CompressionError, match="fixed shape"):
        FixInputShape(shape=[1, 3, 8, 8]).run(p, tmp_path / "o.onnx", sc.PassContext())
