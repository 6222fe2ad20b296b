"""Golden tests on real models that pip packages ship (PP-OCRv4 detector, silero VAD)."""
from __future__ import annotations

import wave

import numpy as np
import pytest

from sdk.errors import InputValidationError
from sdk.runtime import Engine, EngineOptions


def _text_image() -> np.ndarray:
    import cv2

    img = np.full((320, 640, 3), 255, np.uint8)
    cv2.putText(img, "EDGEWISE 2026", (40, 180), cv2.FONT_HERSHEY_SIMPLEX, 2.5, (0, 0, 0), 6)
    return img


def test_ppocr_det_finds_rendered_text(ppocr_det_path):
    img = _text_image()
    x = ((img.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]  # PP-OCR normalisation
    with Engine(ppocr_det_path) as eng:
        assert eng.inputs[0].dtype == "float32" and eng.inputs[0].shape[1] == 3
        out = eng.run({"x": x})
        (prob,) = out.values()
        assert prob.shape == (1, 1, 320, 640)
        text = prob[0, 0, 120:190, 40:620]
        assert text.max() > 0.9 and (text > 0.3).mean() > 0.2  # DB threshold 0.3
        assert prob[0, 0, 250:, :].max() < 0.1 and prob[0, 0, :80, :].max() < 0.1  # blank paper
        with pytest.raises(InputValidationError, match="expects float32 with shape"):
            eng.run({"x": img[None]})  # HWC uint8 straight from OpenCV


def _vad_probs(eng: Engine, audio16k: np.ndarray) -> np.ndarray:
    """silero VAD v5: 512-sample chunks with the previous 64 samples as context."""
    state = np.zeros((2, 1, 128), np.float32)
    ctx = np.zeros(64, np.float32)
    sr = np.array(16000, dtype=np.int64)
    probs = []
    for i in range(0, len(audio16k) - 511, 512):
        chunk = audio16k[i:i + 512]
        out = eng.run({"input": np.concatenate([ctx, chunk])[None], "state": state, "sr": sr})
        assert out["output"].shape == (1, 1) and out["stateN"].shape == (2, 1, 128)
        state, ctx = out["stateN"], chunk[-64:]
        probs.append(float(out["output"][0, 0]))
    return np.array(probs)


def test_silero_vad_silence(silero_vad_path):
    with Engine(silero_vad_path, EngineOptions(warmup=0)) as eng:
        assert [s.name for s in eng.inputs] == ["input", "state", "sr"]
        probs = _vad_probs(eng, np.zeros(16000, np.float32))
    assert len(probs) == 31 and probs.max() < 0.1


def test_silero_vad_real_speech(silero_vad_path, shared_dir):
    from scipy.signal import resample_poly

    wav = shared_dir / "data" / "speech" / "ljspeech" / "LJ001-0001.wav"
    if not wav.is_file():
        pytest.skip(f"{wav} not found")
    with wave.open(str(wav)) as w:
        assert w.getframerate() == 22050
        audio = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    audio16k = resample_poly(audio, 160, 441).astype(np.float32)
    with Engine(silero_vad_path, EngineOptions(warmup=0)) as eng:
        probs = _vad_probs(eng, audio16k)
    assert (probs > 0.5).mean() > 0.25  # a read sentence: speech in a good part of the frames
    assert probs[:3].max() < 0.5        # the recording opens with a short silence
