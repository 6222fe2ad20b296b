"""Audio features: resample, framing, mel filterbank vs Whisper's, log-mel vs torch."""
from __future__ import annotations

import wave

import numpy as np
import pytest

from sdk.errors import PreprocessError
from sdk.preprocess import frame_signal, log_mel_spectrogram, mel_filterbank, resample


def _peak_hz(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)]


@pytest.mark.parametrize("sr_in, sr_out",
                         [(22050, 16000), (48000, 16000), (16000, 44100), (8000, 16000)])
def test_resample_keeps_frequency_and_length(sr_in, sr_out):
    f = 440.0
    t = np.arange(sr_in) / sr_in
    x = np.sin(2 * np.pi * f * t).astype(np.float32)
    y = resample(x, sr_in, sr_out)
    assert y.dtype == np.float32 and len(y) == sr_out
    assert abs(_peak_hz(y, sr_out) - f) <= 1.0
    mid = y[sr_out // 4: 3 * sr_out // 4]
    assert np.sqrt(np.mean(mid ** 2)) == pytest.approx(1 / np.sqrt(2), rel=0.01)
    assert resample(np.stack([x, x], 1), sr_in, sr_out).shape == (sr_out, 2)


def test_resample_removes_aliasing_components():
    sr = 48000
    t = np.arange(sr) / sr
    x = np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 12000 * t)   # 12 kHz > 8 kHz Nyquist
    y = resample(x, sr, 16000)
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    k1 = spec[np.argmin(abs(freqs - 1000))]
    alias = spec[np.argmin(abs(freqs - 4000))]   # where 12 kHz would fold to
    assert 20 * np.log10(k1 / alias) > 40


def test_frame_signal():
    x = np.arange(10.0)
    fr = frame_signal(x, 4, 3)
    assert fr.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert not fr.flags.writeable
    padded = frame_signal(np.arange(11.0), 4, 3, pad=True)
    assert padded.shape == (4, 4) and padded[-1].tolist() == [9, 10, 0, 0]
    assert frame_signal(np.arange(3.0), 4, 2).shape == (0, 4)
    with pytest.raises(PreprocessError):
        frame_signal(np.zeros((3, 3, 3)), 4, 2)


@pytest.mark.parametrize("key, n_mels", [("mel_80", 80), ("mel_128", 128)])
def test_mel_filterbank_matches_whisper(shared_dir, key, n_mels):
    ref = np.load(shared_dir / "data/speech/whisper_mel_filters.npz", allow_pickle=False)[key]
    ours = mel_filterbank(16000, 400, n_mels)
    assert ours.shape == ref.shape == (n_mels, 201)
    assert np.abs(ours - ref).max() < 1e-7


def test_mel_filterbank_properties():
    fb = mel_filterbank(16000, 512, 40, fmin=20, fmax=7600)
    assert fb.shape == (40, 257) and (fb >= 0).all()
    assert (fb.max(axis=1) > 0).all()                      # no empty filter
    peaks = fb.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all()                      # ordered by frequency
    htk = mel_filterbank(16000, 512, 40, htk=True, norm=None)
    assert htk.max() == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError):
        mel_filterbank(16000, 400, 80, fmax=9000)


def _whisper_torch(audio: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """Whisper's own log_mel_spectrogram (openai/whisper audio.py), float32 torch."""
    torch = pytest.importorskip("torch")
    a = torch.from_numpy(audio.astype(np.float32))
    window = torch.hann_window(400)
    stft = torch.stft(a, 400, 160, window=window, return_complex=True)
    magnitudes = stft[..., :-1].abs() ** 2
    mel_spec = torch.from_numpy(filters) @ magnitudes
    log_spec = torch.clamp(mel_spec, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).numpy()


def _chirp(n=16000 * 3, sr=16000, seed=0):
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    x = 0.5 * np.sin(2 * np.pi * (100 + 1500 * t) * t) + 0.01 * rng.standard_normal(n)
    return x.astype(np.float32)


def test_log_mel_matches_torch_reference():
    x = _chirp()
    fb = mel_filterbank(16000, 400, 80)
    ref = _whisper_torch(x, fb)
    ours = log_mel_spectrogram(x)
    assert ours.shape == ref.shape == (80, 300) and ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-4
    # 30 s padding as Whisper does it: 3000 frames
    assert log_mel_spectrogram(x, pad_to=480000).shape == (80, 3000)


def test_log_mel_real_speech_with_whisper_filters(shared_dir):
    path = sorted((shared_dir / "data/speech/ljspeech").glob("*.wav"))[0]
    with wave.open(str(path), "rb") as w:
        sr = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    x = resample(pcm, sr, 16000)
    fb = np.load(shared_dir / "data/speech/whisper_mel_filters.npz", allow_pickle=False)["mel_128"]
    ours = log_mel_spectrogram(x, n_mels=128, filters=fb)
    ref = _whisper_torch(x, fb)
    assert ours.shape == ref.shape and np.abs(ours - ref).max() < 1e-4


def test_log_mel_rejects_int_and_bad_filters():
    with pytest.raises(PreprocessError, match="float audio"):
        log_mel_spectrogram(np.zeros(16000, np.int16))
    with pytest.raises(PreprocessError, match="filters"):
        log_mel_spectrogram(np.zeros(16000, np.float32), filters=np.zeros((80, 100)))
    plain = log_mel_spectrogram(_chirp(), whisper=False)
    assert plain.shape == (80, 301)
