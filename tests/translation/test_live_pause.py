"""Decode on pause on real speech: the early final decode never stands for speech that came after it.

LJ001-0004 is fed through the live segmenter (silero VAD, end-pointer, Whisper tiny.en
partials) chunk by chunk, waiting after each chunk until the recogniser is idle, so the
run does not depend on the machine's speed or load. The speaker pauses after "block
books" (a pause decode starts there) and then goes on for three more seconds.
"""
from __future__ import annotations

import csv

import numpy as np
import pytest

REC_ID = "LJ001-0004"


def _segment(rec, audio: np.ndarray, decode_on_pause: bool, monkeypatch) -> dict:
    from apps.mobile_translation.asr.whisper_stream import WhisperStream
    from apps.mobile_translation.endpoint import EndpointConfig
    from apps.mobile_translation.live_config import LIVE_SILENCE_MS
    from apps.mobile_translation.live_stages import Segmenter, recognise
    from apps.mobile_translation.vad import SileroVAD
    from sdk.pipeline.items import AudioBlock

    streams, hints, calls = [], [], []
    make, hint, transcribe = rec.stream, WhisperStream.pause_hint, rec.transcribe

    def stream(**kw):
        streams.append(make(**kw))
        return streams[-1]

    def pause_hint(self):
        hints.append(self._n)
        hint(self)

    def counted(*a, **kw):
        calls.append(1)
        return transcribe(*a, **kw)

    with monkeypatch.context() as m, SileroVAD() as vad:   # the spies end with this run
        m.setattr(rec, "stream", stream)
        m.setattr(rec, "transcribe", counted)
        m.setattr(WhisperStream, "pause_hint", pause_hint)
        seg = Segmenter(vad, EndpointConfig(min_silence_ms=LIVE_SILENCE_MS), rec, True, lambda *a, **k: None,
                        decode_on_pause)
        heard = []
        for i in range(len(audio) // 512):
            heard += seg(AudioBlock(i, float(i), audio[i * 512:(i + 1) * 512], 16000, {"new_stream": i == 0}))
            if streams:
                assert streams[-1].wait_idle(60)
        heard += seg.flush()
        n_calls = len(calls)
        out = [recognise(rec)(h) for h in heard]
    return {"texts": [h.transcript.text for h in out if h is not None], "hints": hints,
            "final_decodes": len(calls) - n_calls, "utt_samples": [len(h.utt.audio) for h in heard],
            "utt_start": [int(round(h.utt.start_s * 16000)) for h in heard]}


@pytest.mark.shared
def test_decode_on_pause_keeps_the_speech_after_a_pause(whisper_tiny_home, ljspeech, monkeypatch):
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    from apps.mobile_translation.asr.whisper_onnx import WhisperOnnxRecognizer
    from apps.mobile_translation.asr.whisper_stream import WhisperStream
    from apps.mobile_translation.audio_io import read_audio_16k

    monkeypatch.setenv("EDGEWISE_HOME", str(whisper_tiny_home))
    rows = dict(r for r in csv.reader((ljspeech / "transcripts.tsv").open(encoding="utf-8"), delimiter="\t")
                if r and r[0] != "id")
    ref = rows[REC_ID]
    speech, _ = read_audio_16k(ljspeech / f"{REC_ID}.wav")
    audio = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(16000, np.float32)])
    norm = EnglishTextNormalizer()
    with WhisperOnnxRecognizer("whisper-tiny-en", num_beams=1) as rec:
        off = _segment(rec, audio, False, monkeypatch)
        on = _segment(rec, audio, True, monkeypatch)
        assert len(off["texts"]) == len(on["texts"]) == 1, (off, on)
        assert off["hints"] == [] and len(on["hints"]) >= 2
        (end,) = on["utt_samples"]
        # a pause decode began well before the end of the utterance: more speech came after it
        assert min(on["hints"]) < end - 16000, on["hints"]
        text = norm(on["texts"][0])
        assert "predecessors" in text and "printed book" in text, on["texts"]
        assert jiwer.wer(norm(ref), text) <= 0.1 and text == norm(off["texts"][0]), (on["texts"], off["texts"])
        # the decode started at the last pause is the final text: nothing is decoded at the end of speech
        assert on["final_decodes"] == 0

        # the speaker goes on after the first pause, and no later decode ran: the decode of the
        # first words must not stand for the whole utterance
        start, first = on["utt_start"][0], min(on["hints"])
        utt = audio[start:start + end]
        seen = []
        s = WhisperStream(rec, on_partial=lambda c, t, a: seen.append(f"{c} {t}"), step_s=100.0)   # no partials
        s.feed(utt[:first])
        s.pause_hint()
        assert s.wait_idle(60) and len(seen) == 1 and "predecessors" not in norm(seen[0]), seen
        s.feed(utt[first:])
        final = s.finish(speech_end_s=end / 16000).text
        assert "predecessors" in norm(final) and "printed book" in norm(final), final
