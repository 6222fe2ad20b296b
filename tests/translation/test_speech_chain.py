"""Synthesized speech (eSpeak NG) → PocketSphinx → Apertium → eSpeak NG, on real engines."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from apps.mobile_translation import Recognizer, Translator

jiwer = pytest.importorskip("jiwer")

SENTENCES = ["the doctor will see you in ten minutes", "where is the hospital"]


@pytest.fixture(scope="module")
def sphinx():
    pytest.importorskip("pocketsphinx")
    from apps.mobile_translation.asr.pocketsphinx_engine import PocketSphinxRecognizer

    r = PocketSphinxRecognizer("en")
    yield r
    r.close()


@pytest.fixture(scope="module")
def apertium():
    if shutil.which("apertium") is None:
        pytest.skip("apertium is not installed (apt install apertium apertium-eng-spa)")
    from apps.mobile_translation.mt.apertium_engine import ApertiumTranslator

    return ApertiumTranslator("en", "es")


def test_espeak_synthesizes_real_speech(speak):
    from apps.mobile_translation.tts.espeak_engine import EspeakSynthesizer

    sp = EspeakSynthesizer("es").synthesize("Dónde está el hospital")
    assert sp.sample_rate == 22050 and sp.audio.dtype == np.float32
    assert 0.8 < sp.duration_s < 4.0
    assert 0.1 < np.abs(sp.audio).max() <= 1.0
    assert EspeakSynthesizer("en").synthesize("   ").audio.size == 0


def test_espeak_bad_voice_and_text():
    from apps.mobile_translation.tts.espeak_engine import EspeakSynthesizer

    with pytest.raises(ValueError, match="no voice"):
        EspeakSynthesizer("xx-notalanguage")
    with pytest.raises(TypeError):
        EspeakSynthesizer("en").synthesize(b"bytes")


def test_pocketsphinx_recognizes_synthesized_speech(sphinx, speak):
    assert isinstance(sphinx, Recognizer)
    hyps = [sphinx.transcribe(speak(s)) for s in SENTENCES]
    wer = jiwer.wer(SENTENCES, [h.text for h in hyps])
    # measured 0.30 on these two sentences with this voice and rate
    assert wer <= 0.5, [h.text for h in hyps]
    t = hyps[1]
    assert t.segments and all(0 <= s.start < s.end <= t.audio_s + 0.05 for s in t.segments)
    assert t.segments[0].start >= 0.3  # the 0.4 s of leading silence is not a word
    assert t.rtf > 0


def test_pocketsphinx_rejects_bad_audio(sphinx):
    from sdk.errors import InputValidationError

    with pytest.raises(InputValidationError, match="mono"):
        sphinx.transcribe(np.zeros((2, 1600), np.float32))
    with pytest.raises(InputValidationError, match="NaN"):
        sphinx.transcribe(np.full(1600, np.nan, np.float32))
    with pytest.raises(ValueError, match="US English"):
        type(sphinx)("fr")
    with pytest.raises(ValueError, match="preset"):
        type(sphinx)("en", preset="turbo")
    assert sphinx.preset == "fast"


def test_apertium_translates(apertium):
    assert isinstance(apertium, Translator)
    out = apertium.translate("Where is the hospital?")
    assert "hospital" in out.text.lower() and "dónde" in out.text.lower()
    many = apertium.translate_batch(["The doctor is here.", "", "Thank you very much."])
    assert len(many) == 3 and many[1].text == ""
    assert "doctor" in many[0].text.lower() and "gracias" in many[2].text.lower()


def test_apertium_missing_gives_install_hint():
    from apps.mobile_translation.mt.apertium_engine import ApertiumTranslator
    from sdk.errors import DependencyMissingError

    with pytest.raises(DependencyMissingError, match="apt install apertium"):
        ApertiumTranslator("en", "es", binary="apertium-not-installed-here")
    with pytest.raises(ValueError, match="no Apertium code"):
        ApertiumTranslator("en", "xx")


def test_full_chain_speech_to_spanish_speech(sphinx, apertium, speak):
    from apps.mobile_translation.tts.espeak_engine import EspeakSynthesizer

    text = sphinx.transcribe(speak("where is the hospital")).text
    es = apertium.translate(text).text
    assert "hospital" in es.lower()
    sp = EspeakSynthesizer("es").synthesize(es)
    assert sp.duration_s > 0.5


def test_streaming_recognition_cold_then_warm(speak):
    pytest.importorskip("pocketsphinx")
    from apps.mobile_translation.asr.pocketsphinx_engine import PocketSphinxRecognizer

    audio = speak("where is the hospital")
    with PocketSphinxRecognizer("en") as rec:
        results = []
        for _ in range(2):
            s = rec.stream()
            results.append(s.incremental)
            for i in range(0, len(audio), 512):
                s.feed(audio[i:i + 512])
            t = s.finish()
            assert "hospital" in t.text and t.audio_s == pytest.approx(len(audio) / 16000)
        assert results == [False, True]   # the first utterance is decoded whole (cold CMN)
        with pytest.raises(RuntimeError, match="finished"):
            s.feed(audio[:512])
        s = rec.stream()
        s.cancel()                          # releases the decoder
        assert "hospital" in rec.transcribe(audio).text
