"""Unstructured magnitude pruning: measured sparsity, scope, exclusions, archive size."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.compress.base import PASSES, PassContext
from sdk.compress.prune_magnitude import PruneMagnitude, PruneMagnitudeConfig, deflated_size, prune_magnitude
from sdk.errors import CompressionError


def mlp(seed=0):
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((64, 256)) * s).astype(np.float32), n)
             for n, s in (("w_big", 1.0),)]
    inits.append(numpy_helper.from_array((rng.standard_normal((256, 10)) * 0.01).astype(np.float32), "w_small_mag"))
    inits.append(numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w_tiny"))
    inits.append(numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "conv_w"))
    nodes = [
        helper.make_node("Conv", ["img", "conv_w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("MatMul", ["x", "w_big"], ["h"], name="mm1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w_small_mag"], ["y0"], name="mm2"),
        helper.make_node("MatMul", ["q", "w_tiny"], ["t"], name="mm_tiny"),
    ]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64]),
                                       helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 3, 8, 8]),
                                       helper.make_tensor_value_info("q", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y0", TensorProto.FLOAT, [2, 10]),
                           helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 16, 8, 8]),
                           helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def arr(m, name):
    return numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == name))


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.7, 0.95])
def test_per_layer_sparsity_is_measured_and_exact(sparsity):
    m = mlp()
    pm, stats = prune_magnitude(m, PruneMagnitudeConfig(sparsity=sparsity, scope="per_layer", min_params=64))
    assert set(stats["tensors"]) == {"w_big", "w_small_mag", "conv_w"}     # w_tiny (16) skipped
    for name, t in stats["tensors"].items():
        a = arr(pm, name)
        assert t["sparsity"] == pytest.approx((a == 0).mean())
        assert abs(t["sparsity"] - sparsity) <= 1.0 / a.size + 1e-9
        # the survivors are the largest magnitudes
        orig = np.abs(arr(m, name))
        if 0 < sparsity < 1:
            assert orig[a != 0].min() >= orig[a == 0].max()
    np.testing.assert_array_equal(arr(pm, "w_tiny"), arr(m, "w_tiny"))
    onnx.checker.check_model(pm)


def test_global_scope_hits_small_magnitude_tensor_hardest():
    m = mlp()
    _, stats = prune_magnitude(m, PruneMagnitudeConfig(sparsity=0.5, scope="global", min_params=64))
    t = stats["tensors"]
    assert t["w_small_mag"]["sparsity"] > 0.99 and t["w_big"]["sparsity"] < 0.5
    assert stats["sparsity"] == pytest.approx(0.5, abs=1e-3)


def test_exclude_by_node_and_initializer_name():
    m = mlp()
    _, stats = prune_magnitude(m, PruneMagnitudeConfig(sparsity=0.5, min_params=64, exclude=["mm1", "conv_w"]))
    assert set(stats["tensors"]) == {"w_small_mag"}
    with pytest.raises(CompressionError, match="no Conv/Gemm/MatMul"):
        prune_magnitude(m, PruneMagnitudeConfig(min_params=10**9))


def test_pruned_model_runs_and_changes_little_at_low_sparsity():
    m = mlp()
    pm, _ = prune_magnitude(m, PruneMagnitudeConfig(sparsity=0.1, scope="per_layer", min_params=64))
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((2, 64)).astype(np.float32),
             "img": rng.standard_normal((1, 3, 8, 8)).astype(np.float32),
             "q": rng.standard_normal((2, 4)).astype(np.float32)}
    a = ort.InferenceSession(m.SerializeToString()).run(["y0"], feeds)[0]
    b = ort.InferenceSession(pm.SerializeToString()).run(["y0"], feeds)[0]
    assert np.abs(a - b).max() < 0.1 * np.abs(a).max()


def test_pass_records_stats_and_archive_shrinks(tmp_path, yolox_path):
    """Real model: 70% global sparsity on YOLOX-nano makes the deflated model >= 1.8x smaller."""
    ctx = PassContext()
    res = PruneMagnitude(sparsity=0.7).run(yolox_path, tmp_path / "sparse.onnx", ctx)
    out, st = res.path, res.report
    assert st["sparsity"] == pytest.approx(0.7, abs=0.01)
    assert st["deflated_bytes_before"] / st["deflated_bytes_after"] >= 1.8
    assert PASSES["prune_magnitude"] is PruneMagnitude
    sess = ort.InferenceSession(str(out))
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    assert sess.run(None, {"images": x})[0].shape == (1, 3549, 85)


def test_bundle_archive_shrinks(tmp_path):
    """The shipped .ewb (sdk.bundle.pack_bundle) really gets smaller."""
    bundle = pytest.importorskip("sdk.bundle", reason="sdk.bundle not importable yet")
    if not hasattr(bundle, "pack_bundle"):
        pytest.skip("sdk.bundle.pack_bundle not available")
    m = mlp()
    pm, _ = prune_magnitude(m, PruneMagnitudeConfig(sparsity=0.8, min_params=64))
    sizes = {}
    for tag, model in (("dense", m), ("sparse", pm)):
        man = bundle.Manifest(name=f"t-{tag}", version="1.0.0", task="test",
                              models={"model": bundle.ModelEntry(file="model.onnx")})
        bundle.save_bundle(tmp_path / tag, man, files={"model.onnx": model})
        sizes[tag] = bundle.pack_bundle(tmp_path / tag, tmp_path / f"{tag}.ewb").stat().st_size
    assert sizes["dense"] / sizes["sparse"] >= 2.0, sizes
    assert abs(deflated_size(pm.SerializeToString()) - sizes["sparse"]) < 0.2 * sizes["sparse"]


def test_broken_model_file_is_a_clear_error(tmp_path):
    from sdk.errors import ModelLoadError

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(mlp().SerializeToString()[:100])
    with pytest.raises(ModelLoadError, match="broken.onnx"):
        PruneMagnitude().run(bad, tmp_path / "o.onnx", PassContext())
