"""Voice activity detection with the silero VAD ONNX model, run through ``sdk.runtime.Engine``.

The ``silero-vad`` pip package ships the ONNX files in ``silero_vad/data/``; the folder is
found with ``importlib.util.find_spec`` so the package's PyTorch code is never imported.
The model is recurrent: the app keeps its LSTM state (``state`` [2, 1, 128]) and the last
64 samples of the previous chunk (the context the v5/v6 models expect before each
512-sample chunk at 16 kHz) and feeds both back on every call.

Model signature (checked at load): input ``input`` float32 [1, 64 + 512], ``state``
float32 [2, 1, 128], ``sr`` int64 scalar → ``output`` [1, 1] speech probability,
``stateN`` [2, 1, 128].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sdk.closing import Closing
from sdk.errors import DependencyMissingError, InputValidationError, ModelLoadError
from sdk.package_files import package_dir

SAMPLE_RATE = 16000
CHUNK = 512      # samples per VAD step at 16 kHz (32 ms)
CONTEXT = 64     # samples of the previous chunk prepended to each step


def silero_model_path(name: str = "silero_vad.onnx") -> Path:
    """Path of an ONNX model shipped by the silero-vad package (without importing it)."""
    folder = package_dir("silero_vad")
    if folder is None:
        raise DependencyMissingError(
            "the silero-vad package (which ships the VAD ONNX model) is not installed; "
            "run `pip install silero-vad` (its ONNX model runs without PyTorch)")
    path = folder / "data" / name
    if not path.is_file():
        raise DependencyMissingError(f"silero-vad is installed but {path} is missing; reinstall silero-vad")
    return path


class SileroVAD(Closing):
    """Streaming speech probability, one value per 512-sample chunk of 16 kHz audio.

    ``vad(chunk)`` carries the recurrent state across calls; ``reset()`` starts a new stream.
    ``stateless=True`` resets before every chunk (only useful to show what the state buys).
    """

    def __init__(self, model_path: str | Path | None = None, engine_options=None, stateless: bool = False):
        from sdk.runtime import Engine, EngineOptions, SessionOptions

        path = Path(model_path) if model_path else silero_model_path()
        opts = engine_options or EngineOptions(providers=["cpu"], warmup=0,
                                               session=SessionOptions(intra_op_threads=1, inter_op_threads=1))
        self.engine = Engine(path, opts)
        names = {t.name for t in self.engine.inputs}
        if not {"input", "state"} <= names:
            self.engine.close()
            raise ModelLoadError(f"{path.name} is not a silero v5/v6 VAD: expected inputs input/state[/sr], "
                                 f"got {sorted(names)}")
        self._has_sr = "sr" in names
        self._out_names = [t.name for t in self.engine.outputs]  # output, stateN
        self.stateless = stateless
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)

    def __call__(self, chunk: np.ndarray) -> float:
        x = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if x.shape[0] != CHUNK:
            raise InputValidationError(f"VAD expects chunks of {CHUNK} samples at 16 kHz, got {x.shape[0]}")
        if self.stateless:
            self.reset()
        feed = {"input": np.concatenate([self._context, x])[None, :], "state": self._state}
        if self._has_sr:
            feed["sr"] = self._sr
        prob, state = self.engine.run_list(feed, self._out_names)
        self._state = np.asarray(state, np.float32)
        self._context = x[-CONTEXT:].copy()
        return float(np.asarray(prob).reshape(-1)[0])

    def probabilities(self, audio_16k: np.ndarray) -> np.ndarray:
        """Speech probability for each whole 512-sample chunk of ``audio_16k`` (state carried)."""
        a = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
        n = len(a) // CHUNK
        return np.array([self(a[i * CHUNK:(i + 1) * CHUNK]) for i in range(n)], dtype=np.float32)

    def close(self) -> None:
        self.engine.close()
