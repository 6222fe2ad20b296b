"""write_report: report.json matches the result, report.md lists every candidate, pareto.png is a PNG."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdk.compress import CalibrationData, Recipe, optimize, report as report_mod, write_report
from sdk.errors import DependencyMissingError


def test_report_files_match_result(tiny_cnn_path, calib_feeds, tmp_path, monkeypatch, caplog):
    cands = {"fp32_optimized": Recipe([{"pass": "optimize_graph"}]),
             "dynamic_int8": Recipe([{"pass": "quantize_dynamic"}])}
    lat = {"fp32": 8.0, "fp32_optimized": 8.0, "dynamic_int8": 4.0}
    res = optimize(tiny_cnn_path, CalibrationData(calib_feeds(tiny_cnn_path, 2)),
                   lambda p: {"dynamic_int8": 0.97}.get(Path(p).stem, 1.0), max_drop=0.05,
                   candidates=cands, latency_fn=lambda paths, feeds: {n: lat[n] for n in paths},
                   energy=True, write=False, out_dir=tmp_path / "work")
    paths = write_report(res, tmp_path / "rep")
    assert {p.name for p in paths.values()} == {"report.json", "report.md", "pareto.png"}
    data = json.loads(paths["json"].read_text())
    assert data == json.loads(json.dumps(res.to_dict(), default=str))
    assert data["chosen"] == "dynamic_int8" and data["budget"]["allowed_drop"] == 0.05
    rows = {c["name"]: c for c in data["candidates"]}
    assert rows["dynamic_int8"]["speedup"] == 2.0 and rows["dynamic_int8"]["delta"] == pytest.approx(-0.03)
    assert rows["dynamic_int8"]["chosen"] and not rows["fp32"]["chosen"]
    assert rows["fp32"]["energy"]["source"] in ("rapl", "estimate")
    md = paths["markdown"].read_text()
    for name in ("fp32", "fp32_optimized", "dynamic_int8"):
        assert f"| {name} |" in md
    assert "| **>** | dynamic_int8 |" in md and "2.00x" in md
    assert "estimate" in md or "RAPL" in md
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["plot"].stat().st_size > 5000

    # without the `report` extra (no matplotlib): json and markdown still, the plot skipped, the extra named
    def no_matplotlib(module, extra, purpose=""):
        raise DependencyMissingError(f"{module!r} is needed; Run `pip install 'edgewise[{extra}]'`.")

    monkeypatch.setattr(report_mod, "require", no_matplotlib)
    lean = write_report(res, tmp_path / "lean")
    assert set(lean) == {"json", "markdown"} and not (tmp_path / "lean" / "pareto.png").exists()
    assert lean["markdown"].read_text() == md
    assert "edgewise[report]" in caplog.text
