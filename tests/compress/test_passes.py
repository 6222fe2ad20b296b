"""Pass results, recipe reports, the shared workspace and passes from other packages."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sdk.compress import (
    PASSES,
    CalibrationData,
    Pass,
    PassContext,
    PassResult,
    Recipe,
    Workspace,
    available_passes,
    find_pass,
)
from sdk.compress.quantize_weights import WeightQuantizer
from sdk.errors import CompressionError


def test_recipe_returns_every_steps_report(tiny_cnn_path, tmp_path):
    r = Recipe([{"pass": "optimize_graph"}, {"pass": "quantize_weights"}, {"pass": "quantize_weights", "bits": 8}])
    res = r.apply(tiny_cnn_path, tmp_path / "o.onnx")
    assert res.path == tmp_path / "o.onnx" and res.path.is_file()
    assert list(res.reports) == ["optimize_graph", "quantize_weights", "quantize_weights#2"]
    assert res.reports["optimize_graph"] == {}
    assert res.reports["quantize_weights"]["int8"] > 0
    assert res.reports["quantize_weights#2"]["int8"] == 0          # already stored as int8: nothing left


def test_empty_recipe_copies(tiny_cnn_path, tmp_path):
    res = Recipe([]).apply(tiny_cnn_path, tmp_path / "copy.onnx")
    assert res.path.read_bytes() == Path(tiny_cnn_path).read_bytes() and res.reports == {}


class _ReturnsPath(Pass):
    name = "returns_a_path"

    def run(self, model_in, model_out, ctx):
        Path(model_out).write_bytes(Path(model_in).read_bytes())
        return Path(model_out)


def test_a_pass_that_returns_no_result_is_named(tiny_cnn_path, tmp_path):
    with pytest.raises(CompressionError, match=r"pass returns_a_path \(step 1 of 1\): run\(\) must return a "
                                               r"PassResult\(path, report\), got PosixPath"):
        Recipe([_ReturnsPath()]).apply(tiny_cnn_path, tmp_path / "o.onnx")


def test_context_takes_data_or_a_workspace():
    ws = Workspace([{"x": 1}])
    assert PassContext(workspace=ws).calib is ws.calib
    assert PassContext(calib=[{"x": 2}]).calib == [{"x": 2}]
    with pytest.raises(ValueError, match="either calib or a workspace"):
        PassContext(calib=[{"x": 2}], workspace=ws)
    assert PassResult("m.onnx").path == Path("m.onnx") and PassResult("m.onnx").report == {}


def test_workspace_gathers_layer_statistics_once(tiny_cnn_path, calib_feeds, monkeypatch):
    import sdk.compress.quantize_weights as qw

    calls = []
    real = qw.collect_layer_stats

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(qw, "collect_layer_stats", counting)
    ws = Workspace(CalibrationData(calib_feeds(tiny_cnn_path, 8)))
    a = WeightQuantizer(tiny_cnn_path, workspace=ws)
    b = WeightQuantizer(tiny_cnn_path, workspace=ws)
    assert len(calls) == 1 and a.stats is b.stats and a.stats
    WeightQuantizer(tiny_cnn_path, calib=calib_feeds(tiny_cnn_path, 8))   # other data: gathered again
    assert len(calls) == 2


PLUGIN = '''
from sdk.compress import Pass, PassConfig, PassResult
from pydantic import Field
import shutil


class CopyWithNote(Pass):
    name = "thirdparty_copy"

    class Config(PassConfig):
        note: str = Field("hi", description="text put in the report")

    def run(self, model_in, model_out, ctx):
        shutil.copyfile(model_in, model_out)
        return PassResult(model_out, {"note": self.config.note})


class Misnamed(CopyWithNote):
    name = "something_else"
'''


@pytest.fixture
def plugin_on_path(tmp_path, monkeypatch):
    """A package `edgewise_plugin_demo` declared by a bare dist-info folder (no install)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "edgewise_plugin_demo.py").write_text(PLUGIN)
    info = site / "edgewise_plugin_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edgewise-plugin-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [edgewise.passes]
        thirdparty_copy = edgewise_plugin_demo:CopyWithNote
        thirdparty_misnamed = edgewise_plugin_demo:Misnamed
        thirdparty_broken = edgewise_plugin_demo_missing:Nope
        """))
    monkeypatch.syspath_prepend(str(site))
    yield
    for name in ("thirdparty_copy", "something_else"):
        PASSES.pop(name, None)


def test_third_party_pass_through_entry_point(plugin_on_path, tiny_cnn_path, tmp_path):
    assert "thirdparty_copy" not in PASSES and "thirdparty_copy" in available_passes()
    res = Recipe([{"pass": "thirdparty_copy", "note": "from a plugin"}]).apply(tiny_cnn_path, tmp_path / "o.onnx")
    assert res.reports == {"thirdparty_copy": {"note": "from a plugin"}}
    assert PASSES["thirdparty_copy"].__module__ == "edgewise_plugin_demo"
    with pytest.raises(ValueError, match="(?s)thirdparty_copy.*invalid config.*nte"):
        Recipe([{"pass": "thirdparty_copy", "nte": "x"}])


def test_bad_entry_points_are_named(plugin_on_path):
    with pytest.raises(ValueError, match="loads a pass named 'something_else'"):
        find_pass("thirdparty_misnamed")
    with pytest.raises(ValueError, match="edgewise_plugin_demo_missing:Nope.*failed to load: ModuleNotFoundError"):
        find_pass("thirdparty_broken")
    assert find_pass("no_such_pass") is None
    with pytest.raises(ValueError, match="unknown pass 'no_such_pass'; known passes: .*thirdparty_copy"):
        Recipe([{"pass": "no_such_pass"}])
