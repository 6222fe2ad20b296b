"""The stages of the live loop, each one step of ``sdk.pipeline.StreamingPipeline``:

    mic ─> segment (VAD + end-pointing) ─[backlog, drop-oldest]─> recognise ─> translate
        ─> synthesize ─> speak (speaker; closes the mute gate while it plays)

A stage only transforms an item (queues, drops and counters are the pipeline's). The item
after segmentation is a :class:`Heard`, stamped with the capture time of the end of speech
(``t_capture``), so the pipeline's per-stage ``age`` is "end of speech -> this stage done".
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from apps.mobile_translation.endpoint import Endpointer, Utterance
from apps.mobile_translation.live_config import _Pending
from apps.mobile_translation.mt.base import Translation
from sdk.errors import AudioDeviceError

Emit = Callable[..., None]


@dataclass
class Heard:
    """One utterance on its way through the chain, with where its time went."""

    utt: Utterance
    t_capture: float                 # capture time of the end of speech (time.monotonic())
    t_queued: float                  # when segmentation handed it on
    transcript: Any = None           # a Transcript, or a _Pending decode finished by `recognise`
    translation: Translation | None = None
    speech: Any = None               # the synthesized speech (audio, sample_rate)
    times: dict[str, float] = field(default_factory=dict)   # stage -> seconds


class Segmenter:
    """VAD + end-pointing over 32 ms chunks; feeds an incremental recogniser while speech lasts."""

    def __init__(self, vad, endpoint_cfg, asr, streaming: bool, emit: Emit, decode_on_pause: bool = False):
        self.vad, self.asr, self.emit, self.decode_on_pause = vad, asr, emit, decode_on_pause
        self.endpointer = Endpointer(endpoint_cfg)
        self.streaming = streaming and hasattr(asr, "stream")
        self._stream, self._fed = None, 0
        c = self.endpointer.cfg
        # the capture time of each chunk pushed since the last reset (an utterance's worth and more)
        self._times: deque[float] = deque(maxlen=int(c.max_utterance_s * c.sample_rate / c.chunk) + 64)
        self._pushed = 0                 # chunks pushed since the endpointer's last reset
        self.partials = 0
        self.lost_in_device_error = 0
        self.speech_s = 0.0              # seconds of speech handed on
        self._quiet = 0                  # chunks under the VAD's lower threshold since the last speech
        # a pause decode waits for the trailing pad the end-pointer keeps, so that it covers the very
        # audio the utterance will hold (a word's quiet tail included) and can be the final text
        self._pause_chunks = max(1, min(c.chunks(c.post_pad_ms), c.chunks(c.min_silence_ms) - 1))

    def _reset(self) -> None:
        self.endpointer.reset()
        self._pushed = 0
        self._times.clear()
        self.cancel_stream()

    def __call__(self, chunk) -> list[Heard]:
        if chunk.meta.get("new_stream"):   # a new stream is a discontinuity: forget a cut utterance
            if self.endpointer.in_speech:
                self.lost_in_device_error += 1
            self._reset()
            if hasattr(self.vad, "reset"):
                self.vad.reset()
        prob = self.vad(chunk.samples)
        utts = self.endpointer.push(prob, chunk.samples)
        self._times.append(chunk.t_capture)
        self._pushed += 1
        out = [self._heard(u) for u in utts]
        if not utts and not self.endpointer.in_speech:
            self.cancel_stream()  # a click shorter than min_speech was dropped
        self._feed()
        self._quiet = 0 if prob >= self.endpointer.cfg.neg_threshold_value or not self.endpointer.in_speech \
            else self._quiet + 1
        if self.decode_on_pause and self._quiet == self._pause_chunks and hasattr(self._stream, "pause_hint"):
            self._stream.pause_hint()   # a pause: decode now, while the end-pointer waits out the silence
        return out

    def gated(self, chunk) -> None:
        """The speaker was playing when this chunk was captured: forget speech in progress."""
        if self.endpointer.in_speech:
            self._reset()

    def flush(self) -> list[Heard]:
        """End of stream: the utterance in progress, if long enough."""
        return [self._heard(u, t_end=time.monotonic()) for u in self.endpointer.flush()]

    def _heard(self, utt: Utterance, t_end: float | None = None) -> Heard:
        if t_end is None:   # the capture time of the last speech chunk
            sec = self.endpointer.cfg.chunk / self.endpointer.cfg.sample_rate
            back = self._pushed - int(round(utt.speech_end_s / sec))
            t_end = self._times[-1 - back] if 0 <= back < len(self._times) else self._times[-1]
        utt.t_speech_end = t_end
        utt.t_enqueued = time.monotonic()
        self.speech_s += utt.duration_s
        transcript = None
        if self._stream is not None:
            stream, self._stream, self._fed = self._stream, None, 0
            # the partial that may serve as the final text must have heard all of the utterance's audio
            transcript = (_Pending(stream, utt.end_s - utt.start_s)
                          if getattr(stream, "takes_speech_end", False) else stream.finish())
        return Heard(utt, t_end, utt.t_enqueued, transcript)

    def _feed(self) -> None:
        if not self.streaming or not self.endpointer.in_speech:
            return
        chunks = self.endpointer.current_chunks
        if self._stream is None:
            on_partial = self._on_partial if getattr(self.asr, "long_form", False) else None
            self._stream = self.asr.stream(on_partial=on_partial) if on_partial else self.asr.stream()
            self._fed = 0
        for ch in chunks[self._fed:]:
            self._stream.feed(ch)
        self._fed = len(chunks)

    def _on_partial(self, committed: str, tentative: str, audio_s: float) -> None:
        self.partials += 1
        self.emit("partial", committed=committed, tentative=tentative, audio_s=round(audio_s, 3))

    def cancel_stream(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream, self._fed = None, 0


def recognise(asr) -> Callable[[Heard], Heard | None]:
    def stage(h: Heard) -> Heard | None:
        t0 = time.perf_counter()
        h.times["queued"] = time.monotonic() - h.t_queued
        if isinstance(h.transcript, _Pending):
            h.transcript = h.transcript()
        elif h.transcript is None:
            h.transcript = asr.transcribe(h.utt.audio)
        h.times["asr"] = time.perf_counter() - t0
        return h if h.transcript.text.strip() else None   # nothing said: consumed
    return stage


def translate(mt) -> Callable[[Heard], Heard]:
    def stage(h: Heard) -> Heard:
        t0 = time.perf_counter()
        text = h.transcript.text
        h.translation = mt.translate(text) if mt is not None else Translation(text, text, 0.0)
        h.times["mt"] = time.perf_counter() - t0
        h.times["text"] = time.monotonic() - h.t_capture
        return h
    return stage


def synthesize(tts) -> Callable[[Heard], Heard]:
    def stage(h: Heard) -> Heard:
        t0 = time.perf_counter()
        h.speech = tts.synthesize(h.translation.text) if h.translation.text else None
        h.times["tts"] = time.perf_counter() - t0
        return h
    return stage


class SpeakerOutput:
    """The sink: plays the speech (closing the mute ``gate`` meanwhile) and reports the utterance."""

    def __init__(self, sink_factory, device, gate, gate_tail_ms: int, emit: Emit):
        self.factory, self.device, self.gate, self.tail_s = sink_factory, device, gate, gate_tail_ms / 1000.0
        self.emit = emit
        self._sink = None
        self.played = self.output_errors = self.underruns = 0
        self.status_counts: dict[str, int] = {}

    def write(self, h: Heard) -> None:
        u = h.utt
        ev = {"text": h.transcript.text, "translation": h.translation.text, "start_s": round(u.start_s, 3),
              "end_s": round(u.end_s, 3), "latency_text_s": round(h.times["text"], 3), "forced_cut": u.forced,
              # where the latency went: end of speech -> queued (end-pointing), queued -> taken by
              # the recogniser, recognition, translation
              "endpoint_s": round(h.t_queued - h.t_capture, 3), "queued_s": round(h.times["queued"], 3),
              "asr_s": round(h.times["asr"], 3), "mt_s": round(h.times["mt"], 3),
              "asr_mt_s": round(h.times["asr"] + h.times["mt"], 3)}
        sp = h.speech
        if sp is not None and len(sp.audio) and self._play(np.asarray(sp.audio, np.float32), sp.sample_rate):
            ev["tts_s"] = round(h.times["tts"], 3)
            ev["latency_audio_s"] = round(time.monotonic() - h.t_capture, 3)
        self.emit("utterance", **ev)

    def _play(self, audio: np.ndarray, sr: int) -> bool:
        try:
            if self._sink is None or getattr(self._sink, "sample_rate", sr) != sr:
                self._release()
                self._sink = self.factory(sr, self.device)
                if hasattr(self._sink, "open"):
                    self._sink.open()
            queued = getattr(getattr(self._sink, "ring", None), "available", 0) / sr
            # mute the microphone while this plays, plus a tail for the room's echo
            self.gate.close_for(queued + len(audio) / sr + self.tail_s)
            self._sink.write(audio)
            self.played += 1
            return True
        except AudioDeviceError as exc:
            self.output_errors += 1
            self.emit("device_error", message=f"speaker: {exc}")
            self._sink = None
            return False

    def _release(self) -> None:
        sink, self._sink = self._sink, None
        if sink is None:
            return
        self.underruns += int(getattr(sink, "underruns", 0))
        for k, v in (getattr(sink, "status_counts", None) or {}).items():
            self.status_counts[k] = self.status_counts.get(k, 0) + int(v)
        sink.close()

    def close(self) -> None:
        self._release()
