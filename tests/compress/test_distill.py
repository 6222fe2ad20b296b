"""Distillation: torch and ONNX teachers, hints, determinism, export round trip, recovery
after pruning, the recipe pass, and the missing-torch error."""
from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.compress.base import PASSES, PassContext
from sdk.compress.distill import Distill, DistillConfig, FinetuneConfig, distill, finetune_pruned_onnx
from sdk.compress.export import export_onnx
from sdk.compress.prune_channels import PruneChannelsConfig, prune_channels
from sdk.errors import CompressionError, DependencyMissingError

torch = pytest.importorskip("torch", reason="torch (extra 'train') not installed")
nn = torch.nn


def blobs(n, seed, d=16, k=4):
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(123).normal(0, 3, (k, d))
    y = rng.integers(0, k, n)
    X = (centers[y] + rng.normal(0, 1.0, (n, d))).astype(np.float32)
    return X, y.astype(np.int64)


def mlp(d_in, hidden, k=4):
    layers, prev = [], d_in
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU()]
        prev = h
    layers.append(nn.Linear(prev, k))
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    X, y = blobs(800, 1)
    t = mlp(16, [64, 64])
    opt = torch.optim.Adam(t.parameters(), 1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(t(torch.from_numpy(X)), torch.from_numpy(y)).backward()
        opt.step()
    t.eval()
    Xv, yv = blobs(300, 2)
    with torch.no_grad():
        acc = (t(torch.from_numpy(Xv)).argmax(1).numpy() == yv).mean()
    assert acc > 0.95
    return t


FAST = dict(epochs=8, batch_size=64, lr=5e-3, progress=False)


def test_torch_teacher_with_labels(teacher):
    torch.manual_seed(1)
    student = mlp(16, [8])
    res = distill(teacher, student, train=blobs(600, 3), val=blobs(300, 4), config=DistillConfig(**FAST))
    h = res.history
    assert len(h) == 8 and h[-1]["loss"] < h[0]["loss"]
    assert h[-1]["val_accuracy"] >= 0.9 and h[-1]["val_agreement"] >= 0.9
    assert not res.student.training


def test_onnx_teacher_pure_kd(teacher, tmp_path):
    path = export_onnx(teacher, blobs(4, 0)[0], tmp_path / "teacher.onnx")
    X, _ = blobs(600, 3)
    Xv, yv = blobs(300, 4)
    torch.manual_seed(1)
    res = distill(str(path), mlp(16, [8]), train=(X, None), val=(Xv, yv), config=DistillConfig(**FAST))
    assert res.history[-1]["kd"] < res.history[0]["kd"]
    assert res.history[-1]["val_accuracy"] >= 0.9       # labels never seen in training


def test_deterministic_with_seed(teacher):
    X, y = blobs(200, 5)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        s = mlp(16, [8])
        distill(teacher, s, train=(X, y), config=DistillConfig(epochs=2, batch_size=32, progress=False, seed=3))
        outs.append(torch.cat([p.detach().flatten() for p in s.parameters()]))
    assert torch.equal(outs[0], outs[1])


def test_feature_hints_train_adapter(teacher, tmp_path):
    X, y = blobs(400, 6)
    torch.manual_seed(2)
    s = mlp(16, [8])
    cfg = DistillConfig(**{**FAST, "epochs": 5}, hints=[("1", "3")], hint_weight=0.5)
    res = distill(teacher, s, train=(X, y), config=cfg)
    assert res.history[-1]["hint"] < res.history[0]["hint"]
    # ONNX teacher: the hint is an intermediate tensor name of its graph
    path = export_onnx(teacher, X[:2], tmp_path / "t.onnx")
    relu_out = next(n.output[0] for n in onnx.load(str(path)).graph.node if n.op_type == "Relu")
    res = distill(str(path), mlp(16, [8]), train=(X, y),
                  config=DistillConfig(epochs=2, progress=False, hints=[("1", relu_out)], hint_weight=0.5))
    assert res.history[-1]["hint"] > 0
    with pytest.raises(CompressionError, match="no module"):
        distill(teacher, mlp(16, [8]), train=(X, y), config=DistillConfig(epochs=1, hints=[("nope", "3")]))


def test_mse_regression_kd(teacher):
    X, _ = blobs(300, 8)
    torch.manual_seed(3)
    res = distill(teacher, mlp(16, [16]), train=(X, None), val=(X[:50], None),
                  config=DistillConfig(**{**FAST, "loss": "mse"}))
    assert res.history[-1]["val_mse"] < res.history[0]["val_mse"]


@pytest.mark.parametrize("bad,err", [
    (lambda X, y: (X, y[:-1]), "rows"),
    (lambda X, y: X, "tuple"),
    (lambda X, y: (X[:, 0], y), "shape"),
])
def test_bad_training_data(teacher, bad, err):
    X, y = blobs(20, 0)
    with pytest.raises(ValueError, match=err):
        distill(teacher, mlp(16, [8]), train=bad(X, y), config=DistillConfig(epochs=1))


def test_export_round_trip(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    net.eval()
    x = np.random.default_rng(0).normal(size=(2, 3, 16, 16)).astype(np.float32)
    p = export_onnx(net, x, tmp_path / "net.onnx", opset=17)
    m = onnx.load(str(p))
    onnx.checker.check_model(m)
    assert m.opset_import[0].version == 17
    sess = ort.InferenceSession(str(p))
    xb = np.random.default_rng(1).normal(size=(5, 3, 16, 16)).astype(np.float32)   # dynamic batch
    out = sess.run(None, {"input": xb})[0]
    with torch.no_grad():
        ref = net(torch.from_numpy(xb)).numpy()
    assert np.abs(out - ref).max() < 1e-4


def test_missing_torch_names_the_extra(monkeypatch, teacher):
    monkeypatch.setitem(sys.modules, "torch", None)
    X, y = blobs(10, 0)
    with pytest.raises(DependencyMissingError, match=r"edgewise\[train\]"):
        distill(teacher, teacher, train=(X, y))
    with pytest.raises(DependencyMissingError, match=r"edgewise\[train\]"):
        export_onnx(teacher, X, "/tmp/never.onnx")


# --- recovery after pruning --------------------------------------------------------------------
def cnn(seed=0):
    rng = np.random.default_rng(seed)

    def w(name, *shape, s=0.3):
        return numpy_helper.from_array((rng.normal(0, s, shape)).astype(np.float32), name)

    inits = [w("c1.w", 16, 3, 3, 3), w("c1.b", 16, s=0.1), w("c2.w", 16, 16, 3, 3, s=0.15), w("c2.b", 16, s=0.1),
             w("dw.w", 16, 1, 3, 3), w("dw.b", 16, s=0.1), w("c3.w", 6, 32, 1, 1, s=0.2), w("c3.b", 6, s=0.1),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    nodes = [
        helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["a"], name="c1", pads=[1] * 4),
        helper.make_node("Sigmoid", ["a"], ["as"], name="s1"),
        helper.make_node("Mul", ["a", "as"], ["a2"], name="m1"),
        helper.make_node("Conv", ["a2", "c2.w", "c2.b"], ["b"], name="c2", pads=[1] * 4),
        helper.make_node("Relu", ["b"], ["b2"], name="r2"),
        helper.make_node("Add", ["a2", "b2"], ["res"], name="add"),
        helper.make_node("Conv", ["res", "dw.w", "dw.b"], ["d"], name="dw", pads=[1] * 4, group=16),
        helper.make_node("MaxPool", ["d"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Resize", ["p", "", "scales"], ["u"], name="up", mode="nearest"),
        helper.make_node("Concat", ["u", "res"], ["cat"], name="cat", axis=1),
        helper.make_node("Conv", ["cat", "c3.w", "c3.b"], ["y"], name="c3"),
    ]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 16, 16])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    return m


def test_onnx_to_torch_matches_onnxruntime():
    from sdk.compress.onnx_torch import onnx_to_torch, write_back

    m = cnn()
    mod = onnx_to_torch(m)
    x = np.random.default_rng(0).normal(size=(3, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        y = mod(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(m.SerializeToString())
    ref = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(3)])
    assert np.abs(y - ref).max() < 1e-4
    assert {k for k in mod.param_of} == {"c1.w", "c1.b", "c2.w", "c2.b", "dw.w", "dw.b", "c3.w", "c3.b"}
    back = write_back(mod, m)
    np.testing.assert_array_equal(ort.InferenceSession(back.SerializeToString()).run(None, {"x": x[:1]})[0],
                                  sess.run(None, {"x": x[:1]})[0])


def test_finetune_pruned_recovers_teacher_outputs(tmp_path):
    teacher = cnn()
    onnx.save(teacher, str(tmp_path / "teacher.onnx"))
    pruned, rep = prune_channels(teacher, PruneChannelsConfig(ratio=0.5, round_to=1))
    assert rep.groups_pruned == 1          # the c1/c2 residual group (c3 feeds the graph output)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3, 16, 16)).astype(np.float32)
    Xv = rng.normal(size=(16, 3, 16, 16)).astype(np.float32)
    cfg = FinetuneConfig(epochs=6, lr=3e-3, batch_size=16, progress=False)
    res = finetune_pruned_onnx(pruned, str(tmp_path / "teacher.onnx"), X, cfg, out_path=tmp_path / "ft.onnx", val=Xv)

    def mse(model):
        s = ort.InferenceSession(model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model))
        t = ort.InferenceSession(teacher.SerializeToString())
        return float(np.mean([(s.run(None, {"x": x[None]})[0] - t.run(None, {"x": x[None]})[0]) ** 2 for x in Xv]))

    before, after = mse(pruned), mse(res.onnx_path)
    assert after < 0.7 * before, (before, after)
    ft = onnx.load(str(res.onnx_path))
    assert [list(i.dims) for i in ft.graph.initializer] == [list(i.dims) for i in pruned.graph.initializer]
    assert res.history[-1]["val_mse"] == pytest.approx(after, rel=1e-3)


def test_distill_pass_uses_calibration_and_teacher(tmp_path):
    teacher = cnn()
    onnx.save(teacher, str(tmp_path / "teacher.onnx"))
    pruned, _ = prune_channels(teacher, PruneChannelsConfig(ratio=0.5, round_to=1))
    onnx.save(pruned, str(tmp_path / "pruned.onnx"))
    feeds = [{"x": np.random.default_rng(i).normal(size=(1, 3, 16, 16)).astype(np.float32)} for i in range(16)]
    assert PASSES["distill"] is Distill
    ctx = PassContext(calib=feeds, source_model=tmp_path / "teacher.onnx")
    res = Distill(epochs=2, batch_size=8, max_samples=12).run(tmp_path / "pruned.onnx", tmp_path / "out.onnx", ctx)
    assert res.path.is_file() and len(res.report["history"]) == 2
    with pytest.raises(CompressionError, match="teacher"):
        Distill().run(tmp_path / "pruned.onnx", tmp_path / "o2.onnx", PassContext(calib=feeds))
    with pytest.raises(CompressionError, match="training inputs"):
        Distill(teacher=str(tmp_path / "teacher.onnx")).run(tmp_path / "pruned.onnx", tmp_path / "o3.onnx",
                                                            PassContext())


def test_custom_teacher_loss_is_used(teacher):
    X, _ = blobs(128, 9)
    calls = []

    def l1(s, t):
        calls.append(s.shape)
        return (s - t).abs().mean()

    torch.manual_seed(4)
    res = distill(teacher, mlp(16, [8]), train=(X, None), config=DistillConfig(epochs=3, batch_size=32, lr=5e-3,
                                                                                 progress=False), loss_fn=l1)
    assert len(calls) == 12 and calls[0] == (32, 4)
    assert res.history[-1]["kd"] < res.history[0]["kd"]
