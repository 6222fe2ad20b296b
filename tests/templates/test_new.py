"""`edgewise new`: the template list, refusals (exit 2, nothing written or overwritten), and
each template generated, its README commands and its own tests run in the new folder."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile

import pytest
from readme_commands import REPO, fenced_commands, indented_commands

from sdk.cli.main import main
from sdk.templates import TemplateSpec, find_templates, generate, get_template

TEMPLATES = ["medical_imaging", "driving_perception", "mobile_translation"]


def test_list_shows_one_line_per_template(capsys):
    assert main(["new", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert sorted(ln.split()[0] for ln in lines) == sorted(TEMPLATES)
    assert main(["new", "--list", "--json"]) == 0
    assert sorted(t["name"] for t in json.loads(capsys.readouterr().out)) == sorted(TEMPLATES)


@pytest.mark.parametrize("name", ["My-App", "1app", "class", "wound triage", "App", "sdk", "os", "", "a/b", "bench",
                                  "medical"])
def test_invalid_name_exits_2_and_writes_nothing(tmp_path, capsys, name):
    assert main(["new", name, "--from", "medical_imaging", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "NAME" in err
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_exits_2_and_keeps_every_file(tmp_path, capsys):
    target = tmp_path / "wound_triage"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    (target / "config.yaml").write_text("mine too")
    assert main(["new", "wound_triage", "--from", "medical_imaging", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in target.iterdir()) == ["config.yaml", "keep.txt"]
    assert (target / "keep.txt").read_text() == "mine" and (target / "config.yaml").read_text() == "mine too"
    assert [p.name for p in tmp_path.iterdir()] == ["wound_triage"]      # no temporary folder left


def test_existing_file_as_target_exits_2(tmp_path):
    (tmp_path / "app").write_text("a file")
    assert main(["new", "app", "--from", "driving_perception", "--dir", str(tmp_path)]) == 2
    assert (tmp_path / "app").read_text() == "a file"


def test_unknown_template_and_missing_arguments_exit_2(tmp_path, capsys):
    assert main(["new", "x_app", "--from", "nope", "--dir", str(tmp_path)]) == 2
    assert "expected one of" in capsys.readouterr().err
    assert main(["new", "x_app", "--dir", str(tmp_path)]) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_failing_template_leaves_nothing_behind(tmp_path):
    spec = get_template("medical_imaging")
    broken = TemplateSpec(**{**spec.model_dump(), "copy_modules": (*spec.copy_modules, "no_such_module.py")})
    with pytest.raises(FileNotFoundError, match="no_such_module.py"):
        generate(broken, "x_app", tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("template", TEMPLATES)
def test_generated_package_is_renamed_and_self_contained(tmp_path, template):
    spec = find_templates()[template]
    project = generate(spec, "new_app", tmp_path)
    pkg = project / "new_app"
    assert {"pyproject.toml", "README.md", "tests"} <= {p.name for p in project.iterdir()}
    assert {"cli.py", "config.py", "config.yaml", "__main__.py", "__init__.py"} <= {p.name for p in pkg.iterdir()}
    assert '"edgewise.commands"]\nnew_app = "new_app.cli:register"' in (project / "pyproject.toml").read_text()
    for f in pkg.rglob("*.py"):
        text = f.read_text()
        assert spec.package not in text and "import apps" not in text and "{{" not in text, f
        assert "../shared" not in text, f
    readme = (project / "README.md").read_text()
    assert "## What to replace" in readme and "config.yaml" in readme
    missing = _unresolved_imports(pkg, "new_app")
    assert not missing, f"modules imported but not copied (add them to {template}'s copy_modules): {missing}"


def _unresolved_imports(pkg, name: str) -> list[str]:
    """``from new_app.x import`` / ``from .x import`` targets that are not in the generated package."""
    import ast

    missing = []
    for f in pkg.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = f.parent
                for _ in range(node.level - 1):
                    base = base.parent
                parts = (node.module or "").split(".") if node.module else []
            elif node.module and node.module.split(".")[0] == name:
                base, parts = pkg, node.module.split(".")[1:]
            else:
                continue
            target = base.joinpath(*parts) if parts else base
            candidates = [target.with_suffix(".py"), target / "__init__.py"]
            if not node.module or not parts:   # `from . import x`: x is a module or a name of __init__
                candidates += [target / f"{a.name}.py" for a in node.names]
            if not any(c.is_file() for c in candidates):
                missing.append(f"{f.relative_to(pkg)}: {'.' * node.level}{node.module or ''}")
    return missing


def test_medical_readme_commands_are_the_walkthrough(tmp_path):
    """The generated README and the project README show the same commands (one walk-through)."""
    project = generate(get_template("medical_imaging"), "wound_triage", tmp_path)
    app = indented_commands((project / "README.md").read_text(), "## Run it")
    walk = fenced_commands((REPO / "README.md").read_text(), "<!-- walkthrough:")
    assert walk[walk.index("cd wound_triage") + 1:] == app


@pytest.mark.parametrize("template", ["driving_perception", "mobile_translation"])
def test_generated_readme_commands_and_tests_run(tmp_path, run_commands, template):
    if template == "driving_perception":
        pytest.importorskip("torch", reason="the detector recipe trains with torch: pip install 'edgewise[train]'")
    project = generate(get_template(template), "site_app", tmp_path)
    commands = indented_commands((project / "README.md").read_text(), "## Run it")
    assert commands[-1].startswith("python -m pytest")
    results = run_commands(commands, project)
    assert re.search(r"\d+ passed", results[-1].stdout) and "failed" not in results[-1].stdout
    if template == "driving_perception":
        lines = (project / "runs" / "events.jsonl").read_text().splitlines()
        assert len(lines) == 10 and all("detections" in json.loads(ln) for ln in lines)
    else:
        assert "chrF" in results[1].stdout and results[2].stdout.strip() == "Buenos días"


def test_generated_project_builds_a_wheel_whose_group_edgewise_finds(tmp_path):
    """Installable: the wheel carries the package data and registers `edgewise NAME` (the wheel is
    unpacked onto PYTHONPATH, so nothing is installed into the environment)."""
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools in this environment")
    project = generate(get_template("mobile_translation"), "desk_app", tmp_path / "src")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "--no-index", "-w", str(tmp_path / "dist"), str(project)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("desk_app-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "site")
    assert {"desk_app/config.yaml", "desk_app/phrasebook.tsv", "desk_app/bundles/README.md"} <= names
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(tmp_path / "site")]))
    r = subprocess.run([sys.executable, "-m", "sdk.cli.main", "desk_app", "translate", "Good morning!",
                        "--engines", "phrasebook", "--json"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["text"] == "Buenos días"
