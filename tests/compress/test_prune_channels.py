"""Structured channel pruning on ONNX graphs built here for each pattern, and on YOLOX-nano.

Tolerance statement: when the removed channels carry no signal (their filters, biases and
the depthwise biases along their path are zero), the pruned model's outputs equal the
original's within 1e-5 absolute on the small graphs and 1e-3 relative-to-range on
YOLOX-nano (float summation order changes). With real (non-zero) filters the outputs move;
that is what distillation recovers.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError

from sdk.compress.base import PASSES, PassContext
from sdk.compress.graph_channels import analyze_channels
from sdk.compress.prune_channels import PruneChannels, PruneChannelsConfig, count_params, prune_channels
from sdk.errors import CompressionError

RNG = np.random.default_rng(0)
EXACT = PruneChannelsConfig(ratio=0.5, round_to=1, min_channels=1)


class G:
    """A tiny graph builder: nodes + initializers, one float input."""

    def __init__(self, shape=(1, 3, 8, 8)):
        self.nodes, self.inits, self.shape = [], [], shape

    def w(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    def conv(self, name, x, cin, cout, k=3, group=1, zero=()):
        w = RNG.normal(0, 0.3, (cout, cin // group, k, k)).astype(np.float32)
        b = RNG.normal(0, 0.1, cout).astype(np.float32)
        w[list(zero)] = 0
        b[list(zero)] = 0
        self.nodes.append(helper.make_node("Conv", [x, self.w(f"{name}.weight", w), self.w(f"{name}.bias", b)],
                                           [name], name=name, pads=[k // 2] * 4, group=group))
        return name

    def bn(self, name, x, c, zero=()):
        mean = RNG.normal(0, 0.1, c)
        beta = RNG.normal(0, 0.1, c)
        mean[list(zero)] = 0
        beta[list(zero)] = 0
        self.nodes.append(helper.make_node(
            "BatchNormalization", [x, self.w(f"{name}.gamma", RNG.uniform(0.5, 1.5, c)), self.w(f"{name}.beta", beta),
                                   self.w(f"{name}.mean", mean), self.w(f"{name}.var", RNG.uniform(0.5, 1.5, c))],
            [name], name=name))
        return name

    def op(self, op, ins, name, **kw):
        self.nodes.append(helper.make_node(op, ins, [name], name=name, **kw))
        return name

    def silu(self, x):
        s = self.op("Sigmoid", [x], f"{x}_sig")
        return self.op("Mul", [x, s], f"{x}_silu")

    def model(self, out, out_shape=None):
        g = helper.make_graph(self.nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, self.shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        onnx.checker.check_model(m)
        return m


def run(m, x):
    return ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]


def shapes(m):
    return {i.name.split("__pruned")[0]: list(i.dims) for i in m.graph.initializer}


def x_in(shape=(1, 3, 8, 8)):
    return RNG.normal(0, 1, shape).astype(np.float32)


def chain(zero1=(), zero2=()):
    """Conv-BN-Relu -> Conv-BN-Relu -> GlobalAveragePool -> Flatten -> Gemm."""
    g = G()
    h = g.op("Relu", [g.bn("bn1", g.conv("conv1", "x", 3, 16, zero=zero1), 16, zero=zero1)], "r1")
    h = g.op("Relu", [g.bn("bn2", g.conv("conv2", h, 16, 16, zero=zero2), 16, zero=zero2)], "r2")
    h = g.op("Flatten", [g.op("GlobalAveragePool", [h], "gap")], "flat")
    g.w("fc.weight", RNG.normal(0, 0.3, (10, 16)))
    g.w("fc.bias", RNG.normal(0, 0.1, 10))
    g.op("Gemm", [h, "fc.weight", "fc.bias"], "logits", transB=1)
    return g.model("logits", [1, 10])


def test_chain_shapes_shrink_and_head_follows():
    m = chain()
    pm, rep = prune_channels(m, EXACT)
    s0, s1 = shapes(m), shapes(pm)
    assert s0["conv1.weight"] == [16, 3, 3, 3] and s1["conv1.weight"] == [8, 3, 3, 3]
    assert s1["conv2.weight"] == [8, 8, 3, 3]          # out 16->8 and in 16->8
    for p in ("gamma", "beta", "mean", "var"):
        assert s1[f"bn1.{p}"] == [8] and s1[f"bn2.{p}"] == [8]
    assert s1["fc.weight"] == [10, 8]                  # Gemm input columns follow the GAP channels
    assert s1["conv1.bias"] == [8]
    assert rep.groups_pruned == 2 and rep.params_after < rep.params_before
    assert rep.params_after == count_params(pm)
    assert run(pm, x_in()).shape == (1, 10)


def test_ratio_zero_is_identity():
    m = chain()
    pm, rep = prune_channels(m, PruneChannelsConfig(ratio=0.0))
    x = x_in()
    assert rep.groups_pruned == 0 and shapes(pm) == shapes(m)
    np.testing.assert_array_equal(run(pm, x), run(m, x))


def test_zero_filters_are_the_ones_removed_and_outputs_are_unchanged():
    z1, z2 = (1, 3, 4, 8, 9, 11, 12, 15), (0, 2, 5, 6, 7, 10, 13, 14)
    m = chain(zero1=z1, zero2=z2)
    pm, _ = prune_channels(m, EXACT)
    w0 = numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == "conv1.weight"))
    w1 = numpy_helper.to_array(next(i for i in pm.graph.initializer if i.name == "conv1.weight"))
    kept = [c for c in range(16) if c not in z1]
    np.testing.assert_array_equal(w1, w0[kept])
    x = x_in((1, 3, 8, 8))
    np.testing.assert_allclose(run(pm, x), run(m, x), atol=1e-5)


def test_bn_gamma_scales_importance():
    m = chain()
    # make channel 0..7 of bn1 nearly dead through gamma; with bn_scale they go first
    for init in m.graph.initializer:
        if init.name == "bn1.gamma":
            arr = numpy_helper.to_array(init).copy()
            arr[:8] = 1e-4
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    an = analyze_channels(m)
    gid = next(g.gid for g in an.prunable() if g.producers == ["conv1"])
    _, rep = prune_channels(m, EXACT)
    assert next(d for d in rep.per_group if d["gid"] == gid)["kept"] == 8
    pm, _ = prune_channels(m, EXACT)
    kept_w = numpy_helper.to_array(next(i for i in pm.graph.initializer if i.name == "bn1.gamma"))
    assert (kept_w > 0.4).all()                       # the dead channels were the ones removed


def residual(zero=()):
    """conv_a -> Relu = A; conv_b(A) -> Relu = B; A + B -> conv_c (graph output)."""
    g = G()
    a = g.op("Relu", [g.conv("conv_a", "x", 3, 16, zero=zero)], "A")
    b = g.op("Relu", [g.conv("conv_b", a, 16, 16, zero=zero)], "B")
    s = g.op("Add", [a, b], "sum")
    g.conv("conv_c", s, 16, 8, k=1)
    return g.model("conv_c", [1, 8, 8, 8])


def test_residual_add_prunes_both_operands_identically():
    m = residual()
    an = analyze_channels(m)
    grp = next(g for g in an.groups.values() if "conv_a" in g.producers)
    assert sorted(grp.producers) == ["conv_a", "conv_b"] and not grp.frozen
    out_grp = next(g for g in an.groups.values() if "conv_c" in g.producers)
    assert out_grp.frozen and "graph output" in out_grp.frozen_reasons[0]
    pm, _ = prune_channels(m, EXACT)
    s = shapes(pm)
    assert s["conv_a.weight"] == [8, 3, 3, 3] and s["conv_b.weight"] == [8, 8, 3, 3]
    assert s["conv_c.weight"] == [8, 8, 1, 1]          # in 16->8, out (graph output) untouched
    assert run(pm, x_in()).shape == (1, 8, 8, 8)


def test_residual_with_zero_channels_is_exact():
    z = (0, 1, 2, 3, 8, 9, 10, 11)
    m = residual(zero=z)
    pm, _ = prune_channels(m, EXACT)
    x = x_in()
    np.testing.assert_allclose(run(pm, x), run(m, x), atol=1e-5)


def concat_silu(zero_a=(), zero_b=()):
    g = G()
    a = g.silu(g.conv("conv_a", "x", 3, 16, zero=zero_a))
    b = g.silu(g.conv("conv_b", "x", 3, 8, zero=zero_b))
    c = g.op("Concat", [a, b], "cat", axis=1)
    p = g.op("MaxPool", [c], "pool", kernel_shape=[2, 2], strides=[2, 2])
    u = g.op("Resize", [p, "", g.w("scales", [1, 1, 2, 2])], "up", mode="nearest")
    g.conv("conv_c", u, 24, 4, k=1)
    return g.model("conv_c", [1, 4, 8, 8])


def test_concat_maps_offsets_to_each_input():
    m = concat_silu()
    an = analyze_channels(m)
    ga = next(g.gid for g in an.prunable() if g.producers == ["conv_a"])
    gb = next(g.gid for g in an.prunable() if g.producers == ["conv_b"])
    keep = {ga: [0, 2, 4, 6, 8, 10, 12, 14], gb: [1, 2, 5, 7]}
    pm, _ = prune_channels(m, EXACT, keep=keep)
    s = shapes(pm)
    assert s["conv_a.weight"][0] == 8 and s["conv_b.weight"][0] == 4 and s["conv_c.weight"] == [4, 12, 1, 1]
    w0 = numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == "conv_c.weight"))
    w1 = numpy_helper.to_array(next(i for i in pm.graph.initializer if i.name == "conv_c.weight"))
    np.testing.assert_array_equal(w1, w0[:, keep[ga] + [16 + k for k in keep[gb]]])


def test_concat_silu_zero_channels_exact():
    m = concat_silu(zero_a=range(8, 16), zero_b=(0, 3, 4, 6))
    pm, rep = prune_channels(m, EXACT)
    assert rep.groups_pruned == 2
    x = x_in()
    np.testing.assert_allclose(run(pm, x), run(m, x), atol=1e-5)


def test_depthwise_follows_its_input_channels():
    g = G()
    h = g.op("Relu", [g.conv("conv1", "x", 3, 16, zero=range(8))], "r1")
    h = g.op("Relu", [g.conv("dw", h, 16, 16, group=16)], "r2")
    g.conv("conv2", h, 16, 4, k=1)
    m = g.model("conv2", [1, 4, 8, 8])
    # the depthwise bias of the removed channels must be zero for the output to stay identical
    for init in m.graph.initializer:
        if init.name == "dw.bias":
            arr = numpy_helper.to_array(init).copy()
            arr[:8] = 0
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    pm, rep = prune_channels(m, EXACT)
    s = shapes(pm)
    assert s["conv1.weight"][0] == 8 and s["dw.weight"] == [8, 1, 3, 3] and s["dw.bias"] == [8]
    assert s["conv2.weight"] == [4, 8, 1, 1]
    dw = next(n for n in pm.graph.node if n.name == "dw")
    assert next(a.i for a in dw.attribute if a.name == "group") == 8
    x = x_in()
    np.testing.assert_allclose(run(pm, x), run(m, x), atol=1e-5)


@pytest.mark.parametrize("blocker", ["Reshape", "Transpose", "SliceC", "Output"])
def test_frozen_groups_are_untouched(blocker):
    g = G()
    h = g.op("Relu", [g.conv("conv1", "x", 3, 16)], "r1")
    if blocker == "Reshape":
        out = g.op("Reshape", [h, _int(g, "shape", [1, -1])], "y")
        shape = [1, 16 * 64]
    elif blocker == "Transpose":
        out = g.op("Transpose", [h], "y", perm=[0, 2, 3, 1])
        shape = [1, 8, 8, 16]
    elif blocker == "SliceC":
        s = g.op("Slice", [h, _int(g, "st", [0]), _int(g, "en", [8]), _int(g, "ax", [1])], "sl")
        out = g.op("Relu", [s], "y")
        shape = [1, 8, 8, 8]
    else:
        out, shape = h, [1, 16, 8, 8]
    m = g.model(out, shape)
    an = analyze_channels(m)
    grp = next(gr for gr in an.groups.values() if gr.producers == ["conv1"])
    assert grp.frozen
    pm, rep = prune_channels(m, EXACT)
    assert rep.groups_pruned == 0 and shapes(pm)["conv1.weight"] == [16, 3, 3, 3]
    x = x_in()
    np.testing.assert_array_equal(run(pm, x), run(m, x))


def _int(g, name, vals):
    g.inits.append(numpy_helper.from_array(np.asarray(vals, np.int64), name))
    return name


def test_min_channels_round_to_and_exclude():
    m = chain()
    _, rep = prune_channels(m, PruneChannelsConfig(ratio=0.9, round_to=8, min_channels=1))
    assert all(d["kept"] == 8 for d in rep.per_group)         # 16 - 14 = 2 -> rounded to 8
    _, rep = prune_channels(m, PruneChannelsConfig(ratio=0.9, round_to=1, min_channels=6))
    assert all(d["kept"] == 6 for d in rep.per_group)
    _, rep = prune_channels(m, PruneChannelsConfig(ratio=0.5, round_to=1, exclude=["conv2"]))
    kept = {tuple(d["producers"]): d["kept"] for d in rep.per_group}
    assert kept[("conv1",)] == 8 and kept[("conv2",)] == 16


def test_global_scope_prunes_unevenly():
    m = chain(zero1=range(12))                          # conv1 has 12 dead filters, conv2 none
    _, rep = prune_channels(m, PruneChannelsConfig(ratio=0.3, scope="global", round_to=1, min_channels=1))
    kept = {tuple(d["producers"]): d["kept"] for d in rep.per_group}
    assert kept[("conv1",)] < kept[("conv2",)]
    assert kept[("conv1",)] <= 6


def test_keep_override_rejects_frozen_group():
    m = residual()
    an = analyze_channels(m)
    frozen = next(g.gid for g in an.groups.values() if "conv_c" in g.producers)
    with pytest.raises(CompressionError, match="not prunable"):
        prune_channels(m, EXACT, keep={frozen: [0, 1]})


def test_pass_registered_and_writes_file(tmp_path):
    assert PASSES["prune_channels"] is PruneChannels
    src = tmp_path / "in.onnx"
    onnx.save(chain(), str(src))
    ctx = PassContext()
    res = PruneChannels(ratio=0.5, round_to=1).run(src, tmp_path / "out.onnx", ctx)
    out = res.path
    assert shapes(onnx.load(str(out)))["conv1.weight"][0] == 8
    assert res.report["groups_pruned"] == 2


def test_pass_gives_the_activation_criterion_its_data(tmp_path):
    """criterion='activation' without reconstruction still receives the calibration inputs."""
    src = tmp_path / "in.onnx"
    onnx.save(chain(), str(src))
    res = PruneChannels(ratio=0.5, round_to=1, criterion="activation").run(
        src, tmp_path / "out.onnx", PassContext(calib=[{"x": x_in()} for _ in range(4)]))
    assert shapes(onnx.load(str(res.path)))["conv1.weight"][0] == 8 and res.report["groups_pruned"] == 2
    with pytest.raises(ValidationError):
        PruneChannels(ratio=1.5)
    with pytest.raises(ValidationError):
        PruneChannels(ratoi=0.5)


# --- YOLOX-nano -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def yolox(yolox_path):
    return onnx.load(str(yolox_path))


def _conv_groups(an):
    return {p: g for g in an.groups.values() for p in g.producers}


@pytest.mark.shared
def test_yolox_prune_quarter(yolox):
    an = analyze_channels(yolox)
    heads = [n.name for n in yolox.graph.node if n.op_type == "Conv" and n.input[1].startswith("head.")
             and n.input[1].endswith("preds.0.weight")]
    by_conv = _conv_groups(an)
    assert heads and all(by_conv[h].frozen for h in heads)      # detection heads reach the output
    pm, rep = prune_channels(yolox, PruneChannelsConfig(ratio=0.25))
    onnx.checker.check_model(pm)
    # every prunable group lost exactly floor(C/4) channels, rounded back up to a multiple of 8
    for d in rep.per_group:
        if not d["frozen"]:
            c = d["size"]
            assert d["kept"] == min(c, max(8, -(-(c - c // 4) // 8) * 8))
    assert rep.groups_pruned >= 60
    assert rep.params_after == count_params(pm)
    assert 0.5 * rep.params_before < rep.params_after < 0.65 * rep.params_before
    s0, s1 = shapes(yolox), shapes(pm)
    for name in ("head.cls_preds.0.weight", "head.reg_preds.0.weight", "head.obj_preds.0.weight"):
        assert s1[name][0] == s0[name][0] and s1[name][1] < s0[name][1]
    sess = ort.InferenceSession(pm.SerializeToString())
    x = RNG.uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    assert sess.run(None, {"images": x})[0].shape == (1, 3549, 85)


@pytest.mark.shared
def test_yolox_zeroed_channels_prune_within_tolerance(yolox):
    """Zero the filters (and depthwise biases) of the channels to remove: pruning is then
    output-preserving up to float summation order."""
    m = onnx.ModelProto()
    m.CopyFrom(yolox)
    an = analyze_channels(m)
    inits = {i.name: i for i in m.graph.initializer}
    nodes = {n.name: n for n in m.graph.node}
    keep, drop = {}, {}
    for g in an.prunable():
        n_keep = g.size - g.size // 4
        keep[g.gid] = list(range(n_keep))
        drop[g.gid] = list(range(n_keep, g.size))

    def zero(name, axis, idx):
        arr = numpy_helper.to_array(inits[name]).copy()
        np.moveaxis(arr, axis, 0)[idx] = 0
        inits[name].CopyFrom(numpy_helper.from_array(arr, name))

    for g in an.prunable():
        for p in g.producers:
            zero(nodes[p].input[1], 0, drop[g.gid])
            zero(nodes[p].input[2], 0, drop[g.gid])
    for (nname, idx), specs in an.slices.items():   # depthwise biases on the removed channels
        node = nodes[nname]
        if node.op_type == "Conv" and idx == 2:
            (axis, segs), = specs
            if len(segs) == 1 and segs[0][0] in drop:
                zero(node.input[2], 0, drop[segs[0][0]])
    pm, rep = prune_channels(m, PruneChannelsConfig(), keep=keep)
    assert rep.params_after < 0.65 * rep.params_before
    x = RNG.uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    a = ort.InferenceSession(m.SerializeToString()).run(None, {"images": x})[0]
    b = ort.InferenceSession(pm.SerializeToString()).run(None, {"images": x})[0]
    scale = float(np.abs(a).max())
    assert np.abs(a - b).max() <= 1e-3 * scale, (np.abs(a - b).max(), scale)


# --- reconstruction (least-squares re-fit of the consumers) -----------------------------------
def _set(m, name, arr):
    for init in m.graph.initializer:
        if init.name == name:
            init.CopyFrom(numpy_helper.from_array(np.asarray(arr, np.float32), name))


def _get(m, name):
    return numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == name)).copy()


def _two_conv(k2: int, pads2: int):
    g = G()
    h = g.op("Relu", [g.conv("conv1", "x", 3, 16)], "r1")
    g.nodes.append(helper.make_node("Conv", [h, g.w("conv2.weight", RNG.normal(0, 0.3, (4, 16, k2, k2))),
                                             g.w("conv2.bias", RNG.normal(0, 0.1, 4))],
                                    ["y"], name="conv2", pads=[pads2] * 4))
    hw = 8 + 2 * pads2 - k2 + 1
    return g.model("y", [1, 4, hw, hw])


@pytest.mark.parametrize("mode", ["oneshot", "sequential"])
def test_reconstruction_is_exact_when_removed_channels_are_redundant(mode):
    m = _two_conv(1, 0)
    w, b = _get(m, "conv1.weight"), _get(m, "conv1.bias")
    w[8:], b[8:] = w[:8], b[:8]                         # channels 8..15 duplicate 0..7
    _set(m, "conv1.weight", w)
    _set(m, "conv1.bias", b)
    gid = next(g.gid for g in analyze_channels(m).prunable() if g.producers == ["conv1"])
    feeds = [{"x": x_in()} for _ in range(6)]
    plain, _ = prune_channels(m, EXACT, keep={gid: list(range(8))})
    cfg = PruneChannelsConfig(ratio=0.5, round_to=1, min_channels=1, reconstruct=mode, ridge=1e-9)
    rec, rep = prune_channels(m, cfg, keep={gid: list(range(8))}, calib=feeds)
    assert "conv2" in rep.reconstructed and shapes(rec)["conv2.weight"] == [4, 8, 1, 1]
    x = x_in()
    ref = run(m, x)
    assert np.abs(run(plain, x) - ref).max() > 0.05        # plain pruning loses the duplicates' share
    np.testing.assert_allclose(run(rec, x), ref, atol=1e-4)


def test_reconstruction_compensates_constant_channels_in_kxk_conv():
    m = _two_conv(3, 0)                                  # valid 3x3 conv: no padded border
    w, b = _get(m, "conv1.weight"), _get(m, "conv1.bias")
    w[8:], b[8:] = 0, np.abs(b[8:]) + 0.5               # removed channels: constant Relu(bias) > 0
    _set(m, "conv1.weight", w)
    _set(m, "conv1.bias", b)
    feeds = [{"x": x_in()} for _ in range(3)]
    cfg = PruneChannelsConfig(ratio=0.5, round_to=1, min_channels=1, reconstruct="oneshot")
    rec, rep = prune_channels(m, cfg, calib=feeds)
    plain, _ = prune_channels(m, EXACT)
    assert rep.reconstructed["conv2"]["kind"] == "convkxk"
    x = x_in()
    assert np.abs(run(plain, x) - run(m, x)).max() > 0.1
    np.testing.assert_allclose(run(rec, x), run(m, x), atol=1e-4)


def test_reconstruction_reduces_error_on_random_filters_and_needs_calib():
    m = chain()
    feeds = [{"x": x_in()} for _ in range(16)]
    plain, _ = prune_channels(m, EXACT)
    rec, _ = prune_channels(m, PruneChannelsConfig(ratio=0.5, round_to=1, reconstruct="sequential"),
                            calib=feeds)
    xs = [x_in() for _ in range(8)]
    err = lambda mm: np.mean([np.abs(run(mm, x) - run(m, x)).mean() for x in xs])  # noqa: E731
    assert err(rec) < 0.7 * err(plain)
    with pytest.raises(CompressionError, match="calibration"):
        prune_channels(m, PruneChannelsConfig(reconstruct="oneshot"))


def test_min_group_leaves_narrow_groups_and_pass_reconstructs_from_ctx_calib(tmp_path):
    g = G()
    h = g.op("Relu", [g.conv("narrow", "x", 3, 8)], "r1")
    h = g.op("Relu", [g.conv("wide", h, 8, 32)], "r2")
    g.conv("head", h, 32, 4, k=1)
    m = g.model("head", [1, 4, 8, 8])
    _, rep = prune_channels(m, PruneChannelsConfig(ratio=0.5, round_to=1, min_channels=1, min_group=16))
    kept = {tuple(d["producers"]): d["kept"] for d in rep.per_group}
    assert kept[("narrow",)] == 8 and kept[("wide",)] == 16
    src = tmp_path / "m.onnx"
    onnx.save(m, str(src))
    ctx = PassContext(calib=[{"x": x_in()} for _ in range(4)])
    res = PruneChannels(ratio=0.5, round_to=1, min_channels=1, reconstruct="oneshot").run(src, tmp_path / "o.onnx",
                                                                                          ctx)
    assert set(res.report["reconstructed"]) == {"head", "wide"}


def test_activation_criterion_removes_channels_nobody_reads():
    """Big filters whose output the next layer ignores (zero consumer weights) are the ones
    to remove under criterion='activation', while 'weight' keeps them."""
    m = _two_conv(1, 0)
    w1, w2 = _get(m, "conv1.weight"), _get(m, "conv2.weight")
    w1[:8] *= 10                                          # large filters ...
    w2[:, :8] = 0                                         # ... that nobody reads
    _set(m, "conv1.weight", w1)
    _set(m, "conv2.weight", w2)
    feeds = [{"x": x_in()} for _ in range(4)]
    by_weight, _ = prune_channels(m, EXACT)
    by_act, _ = prune_channels(m, PruneChannelsConfig(ratio=0.5, round_to=1, min_channels=1,
                                                      criterion="activation"), calib=feeds)
    np.testing.assert_array_equal(_get(by_weight, "conv1.weight"), w1[:8])
    np.testing.assert_array_equal(_get(by_act, "conv1.weight"), w1[8:])
    x = x_in()
    np.testing.assert_allclose(run(by_act, x), run(m, x), atol=1e-5)
    with pytest.raises(CompressionError, match="calibration"):
        prune_channels(m, PruneChannelsConfig(criterion="activation"))


def test_broken_model_file_is_a_clear_error(tmp_path):
    from sdk.errors import ModelLoadError

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(chain().SerializeToString()[:200])
    with pytest.raises(ModelLoadError, match="broken.onnx"):
        PruneChannels(ratio=0.5).run(bad, tmp_path / "o.onnx", PassContext())


@pytest.mark.shared
@pytest.mark.slow
def test_yolox_activation_criterion_and_refit_keep_detections_close(yolox, shared_dir):
    """On real dashcam frames: pruning the wide groups by a quarter with plain L1 ruins the
    objectness map; ranking by activations + least-squares re-fit keeps it close."""
    import cv2

    def frame(p):
        img = cv2.imread(str(p))
        r = min(416 / img.shape[0], 416 / img.shape[1])
        out = np.full((416, 416, 3), 114, np.uint8)
        h, w = int(img.shape[0] * r), int(img.shape[1] * r)
        out[:h, :w] = cv2.resize(img, (w, h))
        return out.transpose(2, 0, 1)[None].astype(np.float32)

    paths = sorted((shared_dir / "data" / "driving" / "advanced_lane_lines" / "test_images").glob("*.jpg"))
    if len(paths) < 5:
        pytest.skip("need the advanced_lane_lines test images")
    calib = [{"images": frame(p)} for p in paths[:4]]
    x = frame(paths[4])
    base = PruneChannelsConfig(ratio=0.25, min_group=128)
    plain, _ = prune_channels(yolox, base)
    smart, rep = prune_channels(yolox, base.model_copy(update={"criterion": "activation", "reconstruct": "oneshot"}),
                                calib=calib)
    assert rep.groups_pruned >= 15 and rep.reconstructed
    ref = ort.InferenceSession(yolox.SerializeToString()).run(None, {"images": x})[0][0]

    def obj_err(m):
        o = ort.InferenceSession(m.SerializeToString()).run(None, {"images": x})[0][0]
        return float(np.abs(o[:, 4] - ref[:, 4]).mean())

    assert obj_err(smart) < 0.5 * obj_err(plain), (obj_err(smart), obj_err(plain))
