"""Fixtures of the template tests: ``run_commands`` runs README commands in a folder."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))   # tests/templates/readme_commands.py

from readme_commands import run_readme_commands


@pytest.fixture()
def run_commands():
    """``run(commands, cwd) -> list of CompletedProcess``; fails naming the command that failed."""
    return run_readme_commands
