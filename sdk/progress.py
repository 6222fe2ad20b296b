"""Progress bars for long work, shown only when asked for and when stderr is a terminal.

One rule for the SDK, its commands and the apps (as faster-whisper's
``tqdm(..., disable=not log_progress)``): a bar never lands in a log file, a pipe or CI output.

    from sdk.progress import progress_bar, progress_enabled

    for x in progress_bar(items, desc="calibrating", unit="sample", enabled=progress):
        ...
    with progress_bar(total=n, desc="latency", enabled=progress) as bar:
        bar.update(1)

``tqdm`` is imported when a bar is made, not when this module is.
"""
from __future__ import annotations

import sys
from typing import Any, Iterable

__all__ = ["progress_bar", "progress_enabled"]


def progress_enabled(enabled: bool | None = True) -> bool:
    """True when ``enabled`` is truthy and stderr is a terminal (a bar goes to stderr)."""
    return bool(enabled) and sys.stderr.isatty()


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int | float | None = None,
                 desc: str | None = None, unit: str = "it", enabled: bool | None = True,
                 leave: bool = True, **tqdm_kwargs: Any) -> Any:
    """A ``tqdm`` bar on stderr, disabled unless :func:`progress_enabled` (``enabled``).

    A disabled bar is still a working ``tqdm`` object (iterating it yields ``iterable``,
    ``update``/``set_postfix``/``close`` do nothing), so callers need no second code path.
    Extra keyword arguments (``initial``, ``unit_scale``, ...) go to ``tqdm``.
    """
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr,
                disable=not progress_enabled(enabled), **tqdm_kwargs)
