"""Recipe: YAML/JSON round trip, validation errors, ordered application, failures named."""
from __future__ import annotations

import json

import pytest

from sdk.compress import CalibrationData, QuantizeStatic, Recipe, count_ops
from sdk.compress.graph_prep import opset_version
from sdk.errors import CompressionError, ModelLoadError

RECIPE_YAML = """\
- pass: optimize_graph
  level: basic
- pass: quantize_static
  format: QOperator
  per_channel: true
  nodes_to_exclude: [fc]
"""


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(tmp_path, suffix):
    src = tmp_path / "r.yaml"
    src.write_text(RECIPE_YAML)
    r = Recipe.from_file(src)
    assert [p.name for p in r.passes] == ["optimize_graph", "quantize_static"]
    assert isinstance(r.passes[1], QuantizeStatic) and r.passes[1].config.per_channel
    assert r.passes[1].config.nodes_to_exclude == ["fc"]
    out = r.to_file(tmp_path / f"copy{suffix}")
    again = Recipe.from_file(out)
    assert again.to_list() == r.to_list()
    if suffix == ".json":
        assert json.loads(out.read_text())[1]["format"] == "QOperator"
    assert "per_channel=True" in r.describe()


def test_passes_key_form():
    r = Recipe.from_list({"passes": [{"pass": "fp16"}]})
    assert r.passes[0].name == "fp16"


@pytest.mark.parametrize("entries, message", [
    ([{"pass": "quantize_sttic"}], "unknown pass 'quantize_sttic'"),
    ([{"pass": "quantize_static", "per_chanel": True}], "per_chanel"),
    ([{"pass": "quantize_static", "format": "QDQQ"}], "format"),
    ([{"format": "QDQ"}], "'pass' key"),
    ("quantize_static", "list of passes"),
])
def test_bad_recipes(entries, message):
    with pytest.raises(ValueError, match=message):
        Recipe.from_list(entries)


def test_bad_file_names_itself(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("- pass: nope\n")
    with pytest.raises(ValueError, match="bad.yaml.*unknown pass"):
        Recipe.from_file(p)


def test_apply_runs_passes_in_order(tiny_cnn_path, tmp_path, calib_feeds):
    src = tmp_path / "r.yaml"
    src.write_text(RECIPE_YAML)
    calib = CalibrationData(calib_feeds(tiny_cnn_path, 8))
    out = Recipe.from_file(src).apply(tiny_cnn_path, tmp_path / "out" / "m.onnx", calib=calib, work_dir=tmp_path).path
    ops = count_ops(out)
    assert ops["QLinearConv"] == 2 and ops["Gemm"] == 1 and ops["QGemm"] == 0, ops
    import onnx

    assert opset_version(onnx.load(str(out))) >= 13
    assert not list(tmp_path.glob("edgewise-recipe-*")), "temporary files are removed"


def test_failure_names_the_pass(tiny_cnn_path, tmp_path):
    r = Recipe([{"pass": "optimize_graph"}, {"pass": "quantize_int4"}])
    with pytest.raises(CompressionError, match=r"pass quantize_int4 \(step 2 of 2\)"):
        r.apply(tiny_cnn_path, tmp_path / "m.onnx")


def test_broken_input_model(tmp_path):
    bad = tmp_path / "half.onnx"
    bad.write_bytes(b"\x08\x07\x12\x04junk")
    with pytest.raises((ModelLoadError, CompressionError), match="half.onnx"):
        Recipe([{"pass": "quantize_dynamic"}]).apply(bad, tmp_path / "m.onnx")
    with pytest.raises(FileNotFoundError):
        Recipe([{"pass": "quantize_dynamic"}]).apply(tmp_path / "missing.onnx", tmp_path / "m.onnx")
