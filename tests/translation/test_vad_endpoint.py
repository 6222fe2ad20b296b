"""Silero VAD through sdk.runtime (real model from the silero-vad wheel) and the end-pointer."""
from __future__ import annotations

import numpy as np
import pytest

from apps.mobile_translation.endpoint import EndpointConfig, Endpointer

CH = 512


@pytest.fixture(scope="module")
def vad():
    from apps.mobile_translation.vad import SileroVAD, silero_model_path

    try:
        silero_model_path()
    except Exception as exc:
        pytest.skip(f"silero-vad model not available: {exc}")
    v = SileroVAD()
    yield v
    v.close()


def test_vad_model_signature_and_no_torch(vad):
    import sys

    names = {t.name: t for t in vad.engine.inputs}
    assert set(names) == {"input", "state", "sr"}
    assert names["state"].dtype == "float32" and names["sr"].dtype == "int64"
    assert "silero_vad" not in sys.modules  # the package's torch code was never imported


def test_vad_speech_vs_silence_real_recording(vad, ljspeech):
    from apps.mobile_translation.audio_io import read_audio_16k

    audio, sr = read_audio_16k(ljspeech / "LJ001-0001.wav")
    assert sr == 22050
    sil = np.zeros(16000, np.float32)
    x = np.concatenate([sil, audio, sil])
    vad.reset()
    p = vad.probabilities(x)
    n_sil = 16000 // CH
    assert p[: n_sil - 2].max() < 0.1          # leading silence
    assert p[-n_sil + 8:].max() < 0.2          # trailing silence (after the decay)
    assert np.median(p[n_sil + 5: -n_sil - 5]) > 0.8   # inside the sentence
    # the recurrent state matters: resetting it before every chunk changes the output
    from apps.mobile_translation.vad import SileroVAD

    with SileroVAD(stateless=True) as stateless:
        q = stateless.probabilities(x)
    assert np.abs(p - q).max() > 0.3
    assert np.mean(q[n_sil + 5: -n_sil - 5]) < np.mean(p[n_sil + 5: -n_sil - 5])


def test_vad_on_synthesized_speech_and_noise(vad, speak):
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(16000) * 0.003).astype(np.float32)
    vad.reset()
    assert vad.probabilities(noise).max() < 0.3
    vad.reset()
    p = vad.probabilities(speak("the doctor will see you in ten minutes", pad_s=0.0))
    assert (p > 0.5).mean() > 0.5


def test_vad_rejects_wrong_chunk(vad):
    from sdk.errors import InputValidationError

    with pytest.raises(InputValidationError, match="512"):
        vad(np.zeros(480, np.float32))


def _run(probs, cfg):
    ep = Endpointer(cfg)
    out = []
    for i, p in enumerate(probs):
        out += ep.push(p, np.full(CH, i, np.float32))  # each chunk holds its own index
    return out, ep


def _chunks(u):
    return sorted(set(u.audio.astype(int).tolist()))


# (name, probs, config overrides, expected [(first chunk, last chunk, forced)])
CASES = [
    ("pre-roll of 3 chunks", [0] * 10 + [1] * 10 + [0] * 20,
     dict(pre_roll_ms=96, min_silence_ms=320, post_pad_ms=64, min_speech_ms=96), [(7, 21, False)]),
    ("no pre-roll", [0] * 10 + [1] * 10 + [0] * 20,
     dict(pre_roll_ms=0, min_silence_ms=320, post_pad_ms=0, min_speech_ms=96), [(10, 19, False)]),
    ("short pause does not split", [1] * 8 + [0] * 5 + [1] * 8 + [0] * 20,
     dict(pre_roll_ms=0, min_silence_ms=320, post_pad_ms=0, min_speech_ms=96), [(0, 20, False)]),
    ("long pause splits", [1] * 8 + [0] * 12 + [1] * 8 + [0] * 20,
     dict(pre_roll_ms=0, min_silence_ms=320, post_pad_ms=0, min_speech_ms=96), [(0, 7, False), (20, 27, False)]),
    ("click shorter than min speech is dropped", [0] * 5 + [1] * 2 + [0] * 20,
     dict(pre_roll_ms=0, min_silence_ms=320, min_speech_ms=200), []),
    ("max length cuts and continues", [1] * 25 + [0] * 20,
     dict(pre_roll_ms=0, min_silence_ms=128, post_pad_ms=0, min_speech_ms=0, max_utterance_s=0.32),
     [(0, 9, True), (10, 19, True), (20, 24, False)]),
    ("hysteresis keeps 0.4 as speech", [0.9] * 6 + [0.4] * 6 + [0.1] * 20,
     dict(pre_roll_ms=0, min_silence_ms=320, post_pad_ms=0, min_speech_ms=0, threshold=0.5), [(0, 11, False)]),
]


@pytest.mark.parametrize("name,probs,over,expected", CASES, ids=[c[0] for c in CASES])
def test_endpointing_table(name, probs, over, expected):
    out, _ = _run(probs, EndpointConfig(**over))
    got = [(_chunks(u)[0], _chunks(u)[-1], u.forced) for u in out]
    assert got == expected
    for u in out:  # contiguous audio, and the times match the chunks
        c = _chunks(u)
        assert c == list(range(c[0], c[-1] + 1))
        assert u.start_s == pytest.approx(c[0] * CH / 16000) and u.end_s == pytest.approx((c[-1] + 1) * CH / 16000)
        assert u.start_s < u.speech_end_s <= u.end_s


def test_endpoint_flush_and_counts():
    cfg = EndpointConfig(pre_roll_ms=0, min_silence_ms=320, min_speech_ms=96)
    out, ep = _run([0] * 3 + [1] * 6, cfg)
    assert out == [] and ep.in_speech
    tail = ep.flush()
    assert len(tail) == 1 and _chunks(tail[0]) == list(range(3, 9))
    _, ep2 = _run([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], EndpointConfig(min_speech_ms=200, min_silence_ms=320))
    assert ep2.dropped_short == 1


@pytest.mark.parametrize("bad", [dict(threshold=1.5), dict(neg_threshold=0.9, threshold=0.5),
                                 dict(max_utterance_s=0.1, min_speech_ms=200), dict(unknown=1)])
def test_endpoint_config_rejects(bad):
    with pytest.raises(ValueError):
        EndpointConfig(**bad)
