"""Held-out splits for the search: every k-th item (k = round(1 / holdout)) is judged, never
calibrated on. Frames (:func:`sdk.compress.frames.split_frames`), audio files and loose
samples all split this way."""
from __future__ import annotations

from typing import Any, Sequence

__all__ = ["every_kth", "split_every_kth"]


def every_kth(items: Sequence[Any], holdout: float) -> tuple[list[Any], list[Any]]:
    """(search, held-out): item i is held out when i % k == k - 1; either side may be empty."""
    k = max(2, round(1 / holdout))
    search: list[Any] = []
    held: list[Any] = []
    for i, x in enumerate(items):
        (held if i % k == k - 1 else search).append(x)
    return search, held


def split_every_kth(items: Sequence[Any], holdout: float | None, what: str = "sample(s)"
                    ) -> tuple[list[Any], list[Any]]:
    """:func:`every_kth`, refusing a split that leaves either side empty; no ``holdout``: all search."""
    items = list(items)
    if not holdout:
        return items, []
    search, held = every_kth(items, holdout)
    if not held or not search:
        raise ValueError(f"cannot hold out {holdout:.0%} of {len(items)} {what}: give at least "
                         f"{max(2, round(1 / holdout))} (more data) or --no-holdout")
    return search, held
