"""`edgewise optimize` on the tiny CNN writes a loadable, verified bundle with recipe and metrics."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sdk.cli.main import main


@pytest.fixture
def calib_npz(tiny_cnn_path, calib_feeds, tmp_path):
    x = np.concatenate([f["input"] for f in calib_feeds(tiny_cnn_path, 6)])
    p = tmp_path / "calib.npz"
    np.savez(p, input=x)
    return p


@pytest.mark.slow
def test_cli_optimize_writes_bundle(tiny_cnn_path, calib_npz, tmp_path, capsys):
    from sdk.bundle import file_sha256, load_bundle

    recipe = tmp_path / "r.yaml"
    recipe.write_text("- pass: quantize_static\n  format: QOperator\n")
    out = tmp_path / "bundle"
    rc = main(["optimize", str(tiny_cnn_path), "--calib", str(calib_npz), "--eval", "fidelity",
               "--max-drop", "1%", "--out", str(out), "--recipe", str(recipe), "--json", "--no-progress"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    b = load_bundle(out)
    m = b.manifest
    assert m.provenance.parent_sha256 == file_sha256(tiny_cnn_path)
    assert json.loads(m.provenance.recipe) == ([] if data["chosen"] == "fp32" else
                                               [c for c in data["candidates"] if c["name"] == "recipe"][0]["recipe"])
    assert m.metrics["fidelity_cosine_fp32"] == pytest.approx(1.0)
    assert {"report.json", "report.md", "pareto.png", "recipe.yaml", "model.onnx"} <= set(m.files)
    assert data["chosen"] in ("fp32", "recipe") and {c["name"] for c in data["candidates"]} == {"fp32", "recipe"}
    with b.engine("model") as eng:
        assert eng.run({"input": np.zeros((1, 3, 32, 32), np.float32)})["logits"].shape == (1, 10)


def _optimize_size_only(model, feeds, out, recipe, recipe_text: str, *extra: str):
    """``edgewise optimize MODEL --size-only`` with ``recipe_text`` written to ``recipe`` and the
    feeds' inputs as calibration data; returns (exit code, the calibration inputs)."""
    x = np.concatenate([f["input"] for f in feeds])
    np.savez(out.with_name("c.npz"), input=x)
    recipe.write_text(recipe_text)
    rc = main(["optimize", str(model), "--calib", str(out.with_name("c.npz")), "--max-drop", "0.05",
               "--out", str(out), "--recipe", str(recipe), "--size-only", "--no-progress", *extra])
    return rc, x


def test_cli_optimize_size_only_int8(tiny_mlp_path, calib_feeds, tmp_path, capsys):
    from sdk.bundle import load_bundle

    out = tmp_path / "b"
    rc, _ = _optimize_size_only(tiny_mlp_path, calib_feeds(tiny_mlp_path, 6), out,
                                tmp_path / "r.json", '[{"pass": "quantize_dynamic"}]')
    assert rc == 0
    m = load_bundle(out).manifest
    assert m.metrics["size_ratio"] > 2.5       # int8 weights of a MatMul model
    assert [e["pass"] for e in json.loads(m.provenance.recipe)] == ["quantize_dynamic"]
    assert load_bundle(out).manifest.extra["optimize"]["chosen"] == "recipe"
    assert "bundle written to" in capsys.readouterr().out


def test_cli_optimize_int4_mix_bundle_runs(tiny_mlp_path, calib_feeds, tmp_path, capsys):
    """An int4/int8 weight mix (opset 21, IR 10) goes through the bundle: hashes, manifest, engine."""
    from sdk.bundle import load_bundle

    out = tmp_path / "b"
    rc, x = _optimize_size_only(tiny_mlp_path, calib_feeds(tiny_mlp_path, 64), out,
                                tmp_path / "r.yaml", "- pass: quantize_weights\n  low_bit_nodes: [matmul1]\n", "--json")
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["chosen"] == "recipe"
    b = load_bundle(out)
    assert b.manifest.metrics["size_ratio"] > 3.0
    with b.engine("model") as eng:
        y = eng.run({"input": x[:1]})["logits"]
    assert y.shape == (1, 10) and np.isfinite(y).all()


@pytest.mark.parametrize("argv, code, message", [
    (["--eval", "top1"], 2, "--labels"),
    (["--max-drop", "lots"], 2, "max_drop"),
])
def test_cli_optimize_bad_usage(tiny_cnn_path, calib_npz, tmp_path, capsys, argv, code, message):
    rc = main(["optimize", str(tiny_cnn_path), "--calib", str(calib_npz), "--out", str(tmp_path / "b"),
               "--no-sensitivity", "--no-progress", *argv])
    assert rc == code
    assert message in capsys.readouterr().err


def test_cli_optimize_broken_model(tmp_path, calib_npz, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not a model")
    rc = main(["optimize", str(bad), "--calib", str(calib_npz), "--out", str(tmp_path / "b"), "--no-progress"])
    assert rc == 3
    assert "bad.onnx" in capsys.readouterr().err


def test_cli_optimize_image_folder(tiny_cnn_path, tmp_path, capsys):
    import cv2

    from sdk.bundle import load_bundle

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(imgs / f"f{i}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- pass: optimize_graph\n")
    rc = main(["optimize", str(tiny_cnn_path), "--calib", str(imgs), "--image-scale", "255", "--out",
               str(tmp_path / "b"), "--recipe", str(recipe), "--json", "--no-progress"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["metric"] == "fidelity_cosine" and data["chosen"] in ("fp32", "recipe")
    assert load_bundle(tmp_path / "b").manifest.metrics["fidelity_cosine"] == pytest.approx(1.0, abs=1e-5)


def test_cli_optimize_bundle_input_keeps_metadata(tiny_cnn_path, calib_npz, tmp_path, capsys):
    from sdk.bundle import Manifest, ModelEntry, load_bundle, save_bundle

    src = save_bundle(tmp_path / "src", Manifest(name="tiny", version="2.0.0", task="classification",
                                                 models={"model": ModelEntry(file="model.onnx")},
                                                 labels=[str(i) for i in range(10)], metrics={"val_top1": 0.5}),
                      files={"model.onnx": tiny_cnn_path, "notes.txt": b"hello"})
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- pass: quantize_dynamic\n")
    rc = main(["optimize", str(src.path), "--calib", str(calib_npz), "--max-drop", "0.5", "--out",
               str(tmp_path / "out"), "--recipe", str(recipe), "--size-only", "--no-progress"])
    assert rc == 0
    m = load_bundle(tmp_path / "out").manifest
    assert m.name == "tiny-optimized" and m.version == "2.0.0" and m.task == "classification"
    assert m.labels == [str(i) for i in range(10)] and m.metrics["val_top1"] == 0.5
    assert "notes.txt" in m.files and m.extra["optimize"]["chosen"] in ("recipe", "fp32")


def _clip(path, n=10):
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(n):
        w.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    w.release()
    return path


def test_cli_optimize_calibrates_on_a_video_and_judges_held_out(tiny_cnn_path, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- pass: quantize_int8\n")
    out = tmp_path / "b"
    rc = main(["optimize", str(tiny_cnn_path), "--calib", str(_clip(tmp_path / "c.mp4")), "--video-frames", "8",
               "--image-scale", "255", "--max-drop", "5%", "--out", str(out), "--recipe", str(recipe), "--json",
               "--no-progress"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["evaluation"]["holdout"] is not None and data["evaluation"]["search"] is not None
    cand = next(c for c in data["candidates"] if c["name"] == "recipe")
    assert cand["search_metric"] is not None and cand["metric"] is not None
    assert cand["report"]["quantize_int8"]["weighted_layers"] == 3     # the pass's report reaches the caller
    assert data["isa_profile"] in ("vnni", "avx2", "arm", "unknown")


@pytest.mark.parametrize("argv, message", [
    (["--input-shape", "1x3xbad"], "expected positive integers"),
    (["--input-shape", "1x3x16x32"], "needs --eval detection on images or videos"),
    (["--holdout", "1.5"], "--holdout must be a fraction"),
])
def test_cli_optimize_bad_flags_exit_2(tiny_cnn_path, calib_npz, tmp_path, capsys, argv, message):
    rc = main(["optimize", str(tiny_cnn_path), "--calib", str(calib_npz), "--out", str(tmp_path / "o"),
               "--no-progress", *argv])
    assert rc == 2
    assert message in capsys.readouterr().err


@pytest.mark.shared
def test_cli_optimize_refuses_an_evaluation_too_small_for_the_budget(yolox_path, shared_dir, tmp_path, capsys):
    """Three stills hold about 10 detections: one flipped box moves F1 by ~0.1, more than half a
    5% budget, so the search refuses to start and says how many detections it needs."""
    stills = sorted((shared_dir / "data" / "driving" / "lanelines_p1" / "test_images").glob("*.jpg"))[:3]
    rc = main(["optimize", str(yolox_path), "--calib", *map(str, stills), "--eval", "detection", "--no-holdout",
               "--max-drop", "5%", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "too small to resolve the budget" in err and "needs at least 40 reference detections" in err
    assert not (tmp_path / "o" / "candidates").exists() or not any((tmp_path / "o" / "candidates").glob("*.onnx"))


def test_cli_optimize_target_openvino_measures_there_or_says_it_fell_back(tiny_cnn_path, calib_npz, tmp_path,
                                                                          capsys):
    """`--target openvino` times every candidate on the OpenVINO provider where it is installed
    (the onnxruntime-ep-openvino plugin), and otherwise says in the result that the latencies
    are the CPU fallback's."""
    from sdk.runtime import resolve_providers

    recipe = tmp_path / "r.yaml"
    recipe.write_text("- pass: quantize_int8\n")
    rc = main(["optimize", str(tiny_cnn_path), "--calib", str(calib_npz), "--target", "openvino", "--no-holdout",
               "--max-drop", "5%", "--out", str(tmp_path / "b"), "--recipe", str(recipe), "--json", "--no-progress"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["target"] == "openvino"
    has_ov = resolve_providers(["openvino"], fallback=True)[0][0] == "OpenVINOExecutionProvider"
    if has_ov:
        assert "not available" not in data["note"]
    else:
        assert "target openvino (OpenVINOExecutionProvider) is not available" in data["note"]


def _dynamic_conv(path):
    """A conv + sigmoid map with a free input size (1x3xHxW -> 1x1xHxW), like a text detector."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (1, 3, 3, 3)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                           helper.make_node("Sigmoid", ["c"], ["y"])], "det",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, "h", "w"])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_cli_optimize_preprocess_spec_feeds_a_model_without_a_fixed_size(tmp_path, capsys):
    """Images for a model with a free input size and normalised inputs (PP-OCR det, say) through
    --preprocess; the bundle written keeps that preprocessing and runs images with it."""
    import cv2

    from sdk.bundle import load_bundle

    model = _dynamic_conv(tmp_path / "det.onnx")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i, hw in enumerate([(40, 60), (50, 50), (30, 80), (64, 48), (45, 70)]):
        cv2.imwrite(str(imgs / f"f{i}.png"), rng.integers(0, 255, (*hw, 3), dtype=np.uint8))
    spec = {"ops": [{"op": "resize", "size": [32, 48]},
                    {"op": "normalize", "scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                    {"op": "to_layout", "layout": "NCHW"}]}
    (tmp_path / "pre.json").write_text(json.dumps(spec))
    (tmp_path / "r.yaml").write_text("- pass: optimize_graph\n")
    without = main(["optimize", str(model), "--calib", str(imgs), "--out", str(tmp_path / "x"),
                    "--recipe", str(tmp_path / "r.yaml"), "--no-progress"])
    assert without == 2 and "fixed NCHW size" in capsys.readouterr().err      # what --preprocess is for
    rc = main(["optimize", str(model), "--calib", str(imgs), "--preprocess", str(tmp_path / "pre.json"),
               "--out", str(tmp_path / "b"), "--recipe", str(tmp_path / "r.yaml"), "--json", "--no-progress"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["metric"] == "fidelity_cosine"
    assert (data["evaluation"]["search"]["size"], data["evaluation"]["holdout"]["size"]) == ("3 samples", "2 samples")
    b = load_bundle(tmp_path / "b")
    assert b.manifest.preprocess.model_dump(mode="json")["ops"][0] == {**spec["ops"][0], "interpolation": "linear"}
    x = b.preprocessor()(rng.integers(0, 255, (100, 90, 3), dtype=np.uint8))
    assert x.shape == (1, 3, 32, 48) and abs(float(x.mean())) < 3     # normalised, not 0..255
    with b.engine("model") as eng:
        assert eng.run({"x": x})["y"].shape == (1, 1, 32, 48)


@pytest.mark.parametrize("spec, message", [
    ('{"ops": [{"op": "resize", "size": [32, 48]}]}', "shape 32x48x3 but the model's input 'x' is 1x3x?x?"),
    ('{"ops": [{"op": "rotate"}]}', "not a valid preprocessing spec"),
    ("missing.json", "no such file: missing.json"),
])
def test_cli_optimize_bad_preprocess_exit_2(tmp_path, capsys, spec, message):
    import cv2

    model = _dynamic_conv(tmp_path / "det.onnx")
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), np.zeros((20, 20, 3), np.uint8))
    rc = main(["optimize", str(model), "--calib", str(tmp_path / "imgs"), "--preprocess", spec,
               "--out", str(tmp_path / "b"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert not (tmp_path / "b").exists()                                 # nothing written on bad input
