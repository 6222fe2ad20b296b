"""The items that flow through streaming pipelines: frames and audio blocks, timestamped.

``t_capture`` is ``time.monotonic()`` when the item was captured (or read), so a pipeline
can tell how old an item is when a worker picks it up (see ``deadline_s``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Frame", "AudioBlock"]


@dataclass
class Frame:
    """One image or video frame (HWC BGR as OpenCV gives it). ``meta`` holds e.g. the path."""

    index: int
    t_capture: float
    data: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class AudioBlock:
    """A block of audio: float32 samples in [-1, 1], ``(n,)`` mono or ``(n, channels)``."""

    index: int
    t_capture: float
    samples: np.ndarray
    sample_rate: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / float(self.sample_rate)

    @staticmethod
    def samples_of(item: Any, sample_rate: int, error: type[Exception], who: str) -> Any:
        """What a sink at ``sample_rate`` writes for ``item``: an AudioBlock's samples (``error``,
        naming ``who``, when the block is at another rate), any other item as it is."""
        if not isinstance(item, AudioBlock):
            return item
        if item.sample_rate != sample_rate:
            raise error(f"{who}: expected {sample_rate} Hz audio, got a block at {item.sample_rate} Hz "
                        f"(resample first)")
        return item.samples
