"""The recogniser interface: 16 kHz float32 mono in, a :class:`Transcript` out."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from sdk.errors import InputValidationError

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Segment:
    """A piece of the transcript with its time span (seconds from the start of the audio)."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    text: str
    segments: list[Segment] = field(default_factory=list)
    audio_s: float = 0.0          # length of the audio recognised
    compute_s: float = 0.0        # time spent recognising it

    @property
    def rtf(self) -> float:
        """Real-time factor: compute time / audio time (below 1 is faster than real time)."""
        return self.compute_s / self.audio_s if self.audio_s > 0 else 0.0


@runtime_checkable
class Recognizer(Protocol):
    name: str
    lang: str

    def transcribe(self, audio_f32_16k: np.ndarray) -> Transcript: ...

    def close(self) -> None: ...


def check_audio(audio: np.ndarray) -> np.ndarray:
    """Validate a mono 16 kHz signal; return it as contiguous float32."""
    a = np.asarray(audio)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise InputValidationError(f"expected mono audio of shape (samples,), got shape {a.shape}")
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    if not np.issubdtype(a.dtype, np.floating):
        raise InputValidationError(f"expected float32 audio in [-1, 1] (or int16), got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.all(np.isfinite(a)):
        raise InputValidationError("audio contains NaN or Inf samples")
    return a
