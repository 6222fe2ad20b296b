"""sdk.progress: a bar only when asked for and when stderr is a terminal."""
from __future__ import annotations

import io
import sys

import pytest

from sdk.progress import progress_bar, progress_enabled


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize("tty, asked, shown", [
    (True, True, True), (True, False, False), (True, None, False), (False, True, False), (False, False, False),
])
def test_bar_shown_only_on_a_terminal_when_asked(monkeypatch, tty, asked, shown):
    stream = _Stream(tty)
    monkeypatch.setattr(sys, "stderr", stream)
    assert progress_enabled(asked) is shown
    bar = progress_bar(range(5), desc="work", unit="item", enabled=asked)
    assert bar.disable is (not shown)
    assert list(bar) == [0, 1, 2, 3, 4]          # a disabled bar still iterates
    assert ("work" in stream.getvalue()) is shown  # nothing written to a pipe or log


def test_manual_bar_and_tqdm_options(monkeypatch):
    stream = _Stream(True)
    monkeypatch.setattr(sys, "stderr", stream)
    with progress_bar(total=2048, initial=1024, unit="B", unit_scale=True, desc="dl") as bar:
        bar.update(1024)
        assert bar.n == 2048
    assert "dl" in stream.getvalue()
