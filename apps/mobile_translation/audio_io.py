"""WAV in/out for the app, on ``sdk.pipeline.WavSource`` / ``WavSink`` and ``sdk.preprocess.resample``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from apps.mobile_translation.asr.base import SAMPLE_RATE


def read_audio_16k(path: str | Path) -> tuple[np.ndarray, int]:
    """(mono float32 audio at 16 kHz, the file's own sample rate)."""
    from sdk.pipeline import WavSource
    from sdk.preprocess import resample

    src = WavSource(path, block_size=1 << 16, mono=True)
    blocks = [b.samples for b in src]
    audio = np.concatenate(blocks).astype(np.float32) if blocks else np.zeros(0, np.float32)
    if src.sample_rate != SAMPLE_RATE and len(audio):
        audio = resample(audio, src.sample_rate, SAMPLE_RATE).astype(np.float32)
    return audio, src.sample_rate


def to_16k(audio: np.ndarray, sr: int) -> np.ndarray:
    from sdk.preprocess import resample

    a = np.asarray(audio, np.float32).reshape(-1)
    return a if sr == SAMPLE_RATE else resample(a, sr, SAMPLE_RATE).astype(np.float32)


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    from sdk.pipeline import WavSink

    with WavSink(path, sample_rate) as sink:
        if len(audio):
            sink.write(np.asarray(audio, np.float32))
    return Path(path)
