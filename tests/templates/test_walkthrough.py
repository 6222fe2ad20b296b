"""The README's walk-through, command for command: `edgewise new` to a triage running on
labelled images, then the generated app's own tests."""
from __future__ import annotations

import json

import pytest
from readme_commands import REPO, fenced_commands

pytest.importorskip("torch", reason="the medical template trains with torch: pip install 'edgewise[train]'")
MARKER = "<!-- walkthrough: tests/templates/test_walkthrough.py runs these commands -->"


def test_readme_walkthrough_runs(tmp_path, run_commands):
    commands = fenced_commands((REPO / "README.md").read_text(), MARKER)
    assert commands[0].startswith("edgewise new ") and any(c.startswith("python -m pytest") for c in commands)
    results = run_commands(commands, tmp_path)
    app = tmp_path / "wound_triage"
    assert (app / "wound_triage" / "bundles" / "model" / "manifest.json").is_file()
    worklist = json.loads((app / "runs" / "first" / "worklist.json").read_text())
    studies = worklist["studies"] if isinstance(worklist, dict) else worklist
    assert len(studies) == 24                               # 12 sample images per label
    assert " passed" in results[-1].stdout and "failed" not in results[-1].stdout
