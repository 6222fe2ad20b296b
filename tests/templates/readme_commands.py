"""Read and run README commands the way a user types them: ``edgewise ...`` is ``python -m
sdk.cli.main ...``, ``python`` is this interpreter, ``cd DIR`` changes the folder of the next
commands. The project is importable through PYTHONPATH (nothing is installed)."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def fenced_commands(text: str, marker: str) -> list[str]:
    """The command lines of the first fenced block after ``marker`` (comments dropped)."""
    i = text.find(marker)
    if i < 0:
        raise ValueError(f"marker {marker!r} not found")
    m = re.search(r"```[a-z]*\n(.*?)```", text[i:], re.DOTALL)
    if m is None:
        raise ValueError(f"no fenced block after {marker!r}")
    return [ln.strip() for ln in m.group(1).splitlines() if ln.strip() and not ln.strip().startswith("#")]


def indented_commands(text: str, heading: str) -> list[str]:
    """The 4-space-indented command lines under ``heading`` (up to the next heading), comments dropped."""
    i = text.find(heading)
    if i < 0:
        raise ValueError(f"heading {heading!r} not found")
    body = text[i + len(heading):].split("\n#", 1)[0]
    lines = [ln[4:] for ln in body.splitlines() if ln.startswith("    ") and ln.strip()]
    return [re.sub(r"\s+#.*$", "", ln).strip() for ln in lines]


def _env() -> dict:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, PYTHONDONTWRITEBYTECODE="1")


def _argv(command: str) -> list[str]:
    argv = shlex.split(command)
    if argv[0] == "edgewise":
        return [sys.executable, "-m", "sdk.cli.main", *argv[1:]]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    raise ValueError(f"unexpected README command {command!r}: expected edgewise, python or cd")


def run_readme_commands(commands: list[str], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Run ``commands`` from ``cwd`` (``cd`` moves); AssertionError naming the first that fails."""
    done = []
    for c in commands:
        if c.startswith("cd "):
            cwd = cwd / shlex.split(c)[1]
            continue
        r = subprocess.run(_argv(c), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600,
                           check=False)
        assert r.returncode == 0, f"`{c}` in {cwd} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        done.append(r)
    return done
