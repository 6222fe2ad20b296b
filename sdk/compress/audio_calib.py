"""Real audio as calibration and evaluation data for a speech encoder (Whisper's).

``edgewise optimize encoder_model.onnx --calib clips/*.wav`` turns each file into the
encoder's ``input_features`` with the SDK's audio preprocessing
(:func:`sdk.preprocess.load_audio` -> 16 kHz mono, :func:`sdk.preprocess.whisper_input_features`
-> Whisper's log-mel of each 30 s window), splits the *files* into a search part
(calibration, sensitivity) and a held-out part (the budget), and judges candidates by the
cosine of the encoder output against the reference model's (:class:`OutputFidelity`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdk.compress.calibration import CalibrationData
from sdk.compress.evaluators import OutputFidelity
from sdk.compress.holdout import split_every_kth
from sdk.errors import CompressionError

__all__ = ["AudioFidelity", "audio_evaluation", "audio_files", "encoder_feeds", "is_audio_data", "split_files"]


def audio_files(paths: Sequence[str | Path]) -> list[Path]:
    """The audio files named, folders expanded (sorted), in order."""
    from sdk.preprocess.audio import AUDIO_EXTS

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTS)
        elif p.suffix.lower() in AUDIO_EXTS:
            out.append(p)
    return out


def is_audio_data(paths: Sequence[str | Path]) -> bool:
    """True when every path is an audio file or a folder holding audio files."""
    from sdk.preprocess.audio import AUDIO_EXTS

    def one(p: Path) -> bool:
        return p.suffix.lower() in AUDIO_EXTS or (p.is_dir() and any(f.suffix.lower() in AUDIO_EXTS
                                                                      for f in p.rglob("*")))
    return bool(paths) and all(one(Path(p)) for p in paths)


def split_files(files: Sequence[Path], holdout: float | None) -> tuple[list[Path], list[Path]]:
    """(search, held-out) audio files, whole files held out (:func:`split_every_kth`)."""
    return split_every_kth(files, holdout, "audio file(s)")


def _input_spec(model_path: str | Path) -> tuple[str, int, int]:
    """(input name, mel bins, frames) of a Whisper-style encoder: one float input [B, mels, frames]."""
    from sdk.compress.graph_prep import load_model

    graph = load_model(model_path, check=False, load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim] \
        if len(inputs) == 1 else []
    if len(dims) != 3 or not all(dims[1:]):
        got = [(i.name, [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim]) for i in inputs]
        raise CompressionError(f"audio calibration feeds a speech encoder with one input [batch, mel bins, frames] "
                               f"(Whisper: input_features [1, 80, 3000]); {Path(model_path).name} takes {got}")
    n_mels, n_frames = dims[1], dims[2]
    assert n_mels is not None and n_frames is not None  # checked above
    return inputs[0].name, int(n_mels), int(n_frames)


def encoder_feeds(model_path: str | Path, files: Sequence[Path],
                  limit: int | None = None) -> list[dict[str, np.ndarray]]:
    """One feed per 30 s window of each file (a short clip is one window, zero-padded)."""
    from sdk.preprocess.audio import WHISPER_SAMPLES, load_audio, whisper_input_features

    name, n_mels, n_frames = _input_spec(model_path)
    feeds: list[dict[str, np.ndarray]] = []
    for f in files:
        audio = load_audio(f, 16000)
        for start in range(0, max(len(audio), 1), WHISPER_SAMPLES):
            feeds.append({name: whisper_input_features(audio[start:start + WHISPER_SAMPLES], n_mels, n_frames)})
            if limit is not None and len(feeds) >= limit:
                return feeds
    return feeds


def audio_evaluation(model_path: str | Path, paths: Sequence[str | Path], holdout: float | None,
                     limit: int = 64, eval_limit: int = 32):
    """(calibration, search evaluator, held-out evaluator or None) from audio files: the
    cosine of every output against ``model_path``'s on the search and held-out windows."""
    files = audio_files(paths)
    if not files:
        raise ValueError(f"--calib: no audio files in {[str(p) for p in paths]}")
    search, held = split_files(files, holdout)
    s_feeds = encoder_feeds(model_path, search, limit)
    h_feeds = encoder_feeds(model_path, held, eval_limit) if held else []
    calib = CalibrationData(s_feeds, name=f"{len(search)} audio file(s)")
    ev = AudioFidelity(model_path, s_feeds[:eval_limit], search)
    hev = AudioFidelity(model_path, h_feeds, held) if h_feeds else None
    return calib, ev, hev


class AudioFidelity(OutputFidelity):
    """:class:`OutputFidelity` (cosine) on encoder windows, saying how many files they came from."""

    def __init__(self, reference_model: str | Path, feeds: list, files: Sequence[Path]):
        super().__init__(reference_model, feeds, metric="cosine")
        self.files = list(files)

    def size_text(self) -> str:
        text = f"{len(self.feeds)} window(s) of {len(self.files)} audio file(s)"
        return text + (f", {self.silent} not scored (silent output)" if self.silent else "")
