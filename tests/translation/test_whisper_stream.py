"""Streaming partials: LocalAgreement-2 commits, the final text at end of speech, warm-up."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
from fakes import wait_until

from apps.mobile_translation.asr.base import Transcript
from apps.mobile_translation.asr.whisper_decode import DecodeCancelled, DecodeOptions
from apps.mobile_translation.asr.whisper_stream import WhisperStream, agreed_prefix


@dataclass
class ScriptedWhisper:
    """Answers each partial decode with the next scripted hypothesis; the final one in full."""

    script: list[str]
    options: DecodeOptions = field(default_factory=lambda: DecodeOptions(beam_size=1))
    calls: list[tuple[int, str]] = field(default_factory=list)
    last_results: list = field(default_factory=list)

    def transcribe(self, audio, options=None, results=None, stop=None):
        kind = "partial" if options is not None and not options.timestamps else "final"
        self.calls.append((len(audio), kind))
        if results is not None:
            results.append(SimpleNamespace(looped=False, compression_ratio=1.0))
        n = sum(k == "partial" for _, k in self.calls)
        text = self.script[min(n - 1, len(self.script) - 1)] if kind == "partial" else "final text"
        return Transcript(text, [], len(audio) / 16000, 0.0)


def _wait(cond, timeout=10.0):
    return wait_until(cond, timeout)


def test_agreed_prefix_ignores_case_and_punctuation():
    assert agreed_prefix("Where is the".split(), "where is, the hospital".split()) == 3
    assert agreed_prefix(["where"], ["were"]) == 0 and agreed_prefix([], ["a"]) == 0


def test_local_agreement_commits_what_two_hypotheses_share():
    rec = ScriptedWhisper(["where is", "where is the hospital", "where is the hospital please"])
    seen = []
    s = WhisperStream(rec, on_partial=lambda c, t, a: seen.append((c, t)), step_s=0.5, min_audio_s=0.5)
    for _ in range(3):
        for _ in range(16):
            s.feed(np.zeros(512, np.float32))
        assert _wait(lambda n=len(seen): len(seen) > n)  # noqa: B008 - the default binds the count now
    assert seen == [("", "where is"), ("where is", "the hospital"), ("where is the hospital", "please")]
    # speech ended before the last partial's audio: that partial is the final text, no new decode
    n_calls = len(rec.calls)
    t = s.finish(speech_end_s=1.0)
    assert t.text == "where is the hospital please" and len(rec.calls) == n_calls
    # speech reached beyond what was decoded: one full decode with the recogniser's own settings
    s2 = WhisperStream(rec, step_s=10, min_audio_s=10)
    s2.feed(np.zeros(16000, np.float32))
    assert s2.finish(speech_end_s=0.9).text == "final text" and rec.calls[-1] == (16000, "final")
    assert s2.final_opts.temperatures == (0.0, 0.4) and s2.final_opts.timestamps
    s3 = WhisperStream(rec)
    s3.cancel()


@dataclass
class HeldWhisper(ScriptedWhisper):
    """Each partial decode waits for ``release`` and honours ``stop()`` meanwhile, as a real one does."""

    release: threading.Event = field(default_factory=threading.Event)
    started: list[int] = field(default_factory=list)

    def transcribe(self, audio, options=None, results=None, stop=None):
        if options is not None and not options.timestamps:
            self.started.append(len(audio))
            end = time.monotonic() + 3.0       # held at most 3 s: a missing cancel fails, never hangs
            while not self.release.is_set() and time.monotonic() < end:
                if stop is not None and stop():
                    raise DecodeCancelled
                time.sleep(0.005)
        return super().transcribe(audio, options, results)


def _feed(s, chunks):
    for _ in range(chunks):
        s.feed(np.zeros(512, np.float32))


def test_finish_cancels_a_partial_that_ends_before_the_speech():
    rec = HeldWhisper(["where is"])
    s = WhisperStream(rec, step_s=0.5, min_audio_s=0.5)
    _feed(s, 16)                               # 0.51 s: a partial starts and is held
    assert _wait(lambda: rec.started == [8192])
    _feed(s, 16)                               # the speaker goes on to 1.02 s
    t = s.finish(speech_end_s=1.0)             # not waited for: cancelled, then one full decode
    assert t.text == "final text" and s.cancelled_decodes == 1
    assert rec.calls == [(16384, "final")]


def test_finish_waits_for_a_partial_that_covers_the_speech():
    rec = HeldWhisper(["where is the hospital"])
    s = WhisperStream(rec, step_s=1.0, min_audio_s=1.0)
    _feed(s, 32)
    assert _wait(lambda: rec.started == [16384])
    out = []
    th = threading.Thread(target=lambda: out.append(s.finish(speech_end_s=1.0)))
    th.start()
    time.sleep(0.05)
    rec.release.set()
    th.join(10)
    assert out and out[0].text == "where is the hospital" and s.cancelled_decodes == 0
    assert [k for _, k in rec.calls] == ["partial"]


def test_pause_hint_restarts_a_stale_partial_as_the_final_decode():
    rec = HeldWhisper(["where is", "where is the hospital"])
    s = WhisperStream(rec, step_s=0.5, min_audio_s=0.5)
    _feed(s, 16)
    assert _wait(lambda: rec.started == [8192])
    _feed(s, 8)                                # less than a step more: no new decode is due
    s.pause_hint()                             # the speaker paused: the final decode of all 12288 samples, now
    assert _wait(lambda: rec.calls == [(12288, "final")]) and s.cancelled_decodes == 1
    assert _wait(lambda: s.updates == 1)
    # no more speech came: that decode is the final transcript, nothing is decoded again
    assert s.finish(speech_end_s=0.768).text == "final text" and rec.calls == [(12288, "final")]


@pytest.mark.shared
def test_live_whisper_partials_and_final(whisper_tiny_home, ljspeech, monkeypatch):
    """The live loop on real speech (fake microphone at real time, silero VAD, Whisper tiny.en)."""
    import csv

    import jiwer
    from fakes import EchoMT, FakeMic, NoiseTTS

    from apps.mobile_translation.asr.whisper_onnx import WhisperOnnxRecognizer
    from apps.mobile_translation.audio_io import read_audio_16k
    from apps.mobile_translation.live import LiveConfig, LiveTranslator

    monkeypatch.setenv("EDGEWISE_HOME", str(whisper_tiny_home))
    rows = [r for r in csv.reader((ljspeech / "transcripts.tsv").open(encoding="utf-8"), delimiter="\t")
            if r and r[0] != "id"]
    rid, ref = next(r for r in rows if r[0] == "LJ001-0015")   # 9 s
    audio, _ = read_audio_16k(ljspeech / f"{rid}.wav")
    audio = np.concatenate([np.zeros(8000, np.float32), audio, np.zeros(24000, np.float32)])
    rec = WhisperOnnxRecognizer("whisper-tiny-en", num_beams=1)
    engines = SimpleNamespace(asr=rec, mt=EchoMT(), tts=NoiseTTS(), close=rec.close)
    events = []
    mics = []

    def source(rate, block, device, buffer_s):
        mics.append(FakeMic(audio, rate, block, device, buffer_s, pace=1.0))
        return mics[-1]

    cfg = LiveConfig(speak=False, max_reopen_attempts=0)
    with LiveTranslator(cfg, on_event=events.append, engines=engines, source_factory=source) as lt:
        assert lt.stage_s["warm_up"] > 0
        lt.start()
        assert _wait(lambda: mics and mics[0].finished, timeout=60)
        assert _wait(lambda: any(e["event"] == "utterance" for e in events), timeout=30)
        lt.stop()
    partials = [e for e in events if e["event"] == "partial"]
    final = [e for e in events if e["event"] == "utterance"]
    assert len(partials) >= 3 and len(final) == 1
    assert partials[0]["t"] < final[0]["t"] and partials[-1]["committed"]
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    assert jiwer.wer(norm(ref), norm(final[0]["text"])) <= 0.1, final[0]["text"]
    # committed words are a prefix of the final text (they never change once shown)
    assert norm(final[0]["text"]).startswith(norm(partials[-1]["committed"]).split()[0])


def test_engine_plan_and_unavailable_pairs(monkeypatch, tmp_path):
    """`auto` falls back to PocketSphinx (and says how to get Whisper); a missing pair lists the usable ones."""
    import shutil

    from apps.mobile_translation.engines import EngineConfig, plan_engines
    from sdk.bundle import ModelStore
    from sdk.errors import DependencyMissingError

    store = ModelStore(cache_dir=tmp_path / "empty")
    p = plan_engines(EngineConfig(src="en", tgt="es"), store)
    assert (p.asr, p.mt) == ("pocketsphinx", "apertium") and "edgewise pull whisper-tiny-en" in p.notes[0]
    assert plan_engines(EngineConfig(src="en", tgt="en"), store).mt == "none"
    with pytest.raises(ValueError, match="edgewise pull whisper-base"):
        plan_engines(EngineConfig(src="es", tgt="en"), store)
    p = plan_engines(EngineConfig(src="es", tgt="en", asr="whisper-onnx"), store)
    assert (p.asr_model, p.task, p.mt) == ("whisper-base", "translate", "none")
    p = plan_engines(EngineConfig(src="es", tgt="fr", asr="whisper-onnx"), store)
    assert (p.task, p.mt) == ("transcribe", "apertium")
    with pytest.raises(ValueError, match="only Whisper translates"):
        plan_engines(EngineConfig(src="en", tgt="es", mt="none"), store)
    if shutil.which("apertium") is None:
        pytest.skip("apertium is not installed")
    from apps.mobile_translation.mt.apertium_engine import ApertiumTranslator, installed_pairs

    assert "en-es" in installed_pairs()
    with pytest.raises(DependencyMissingError, match=r"no spa-fra pair.*en-es"):
        ApertiumTranslator("es", "fr")
