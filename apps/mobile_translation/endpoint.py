"""Utterance end-pointing: turn per-chunk speech probabilities into utterances.

Pure logic (no audio I/O, no model), so it is tested with tables of probabilities.

Rules, with ``chunk`` = 32 ms at 16 kHz:
- speech starts when a chunk's probability reaches ``threshold``; the utterance then
  includes ``pre_roll_ms`` of audio before that chunk (onsets are often quiet);
- it ends once ``min_silence_ms`` of consecutive chunks fall below ``threshold - 0.15``
  (hysteresis); the trailing silence beyond ``post_pad_ms`` is trimmed;
- an utterance with less than ``min_speech_ms`` of speech is dropped as a click/cough;
- an utterance reaching ``max_utterance_s`` is cut there and emitted (``forced=True``),
  and the next one starts at once, so a monologue still gets translated piece by piece.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class EndpointConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: int = Field(16000, description="audio sample rate")
    chunk: int = Field(512, description="samples per VAD probability")
    threshold: float = Field(0.5, gt=0, lt=1, description="speech starts at this probability")
    neg_threshold: float | None = Field(None, description="speech continues above this (default threshold-0.15)")
    pre_roll_ms: int = Field(192, ge=0, description="audio kept before the first speech chunk")
    min_speech_ms: int = Field(200, ge=0, description="shorter utterances are dropped")
    min_silence_ms: int = Field(480, gt=0, description="silence that ends an utterance")
    post_pad_ms: int = Field(96, ge=0, description="silence kept after the last speech chunk")
    max_utterance_s: float = Field(12.0, gt=0, description="longer utterances are cut here")

    @model_validator(mode="after")
    def _check(self):
        neg = self.neg_threshold_value
        if not 0 < neg <= self.threshold:
            raise ValueError(f"neg_threshold must be in (0, threshold={self.threshold}], got {neg}")
        if self.max_utterance_s * 1000 <= self.min_speech_ms:
            raise ValueError("max_utterance_s must be longer than min_speech_ms")
        return self

    @property
    def neg_threshold_value(self) -> float:
        return self.neg_threshold if self.neg_threshold is not None else max(0.01, self.threshold - 0.15)

    def chunks(self, ms: float) -> int:
        """Number of chunks covering ``ms`` milliseconds (rounded up)."""
        return int(np.ceil(ms * self.sample_rate / 1000.0 / self.chunk))


@dataclass
class Utterance:
    audio: np.ndarray         # float32 mono
    start_s: float            # position of the first sample in the stream
    end_s: float              # position after the last sample
    forced: bool = False      # cut at max_utterance_s rather than ended by silence
    speech_end_s: float = 0.0  # end of the last speech chunk (before the trailing pad)
    t_speech_end: float = 0.0  # time.monotonic() of speech_end_s (set by the live loop)
    transcript: object = None  # set when recognised incrementally while it was spoken
    t_enqueued: float = 0.0    # time.monotonic() when the live loop queued it for the worker

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class Endpointer:
    """Feed ``push(prob, chunk_audio)`` per VAD chunk; completed utterances come back."""

    def __init__(self, config: EndpointConfig | None = None):
        self.cfg = config or EndpointConfig()
        c = self.cfg
        self._pre = deque(maxlen=c.chunks(c.pre_roll_ms))
        self._min_speech = c.chunks(c.min_speech_ms)
        self._min_sil = c.chunks(c.min_silence_ms)
        self._pad = min(c.chunks(c.post_pad_ms), self._min_sil)
        self._max = max(1, int(c.max_utterance_s * c.sample_rate / c.chunk))
        self.dropped_short = 0
        self.reset()

    def reset(self) -> None:
        self._pos = 0                 # chunks seen
        self._pre.clear()
        self._cur: list[np.ndarray] | None = None
        self._start = 0               # chunk index of the first chunk in _cur
        self._speech_chunks = 0
        self._silence = 0

    @property
    def in_speech(self) -> bool:
        return self._cur is not None

    @property
    def current_chunks(self) -> list[np.ndarray]:
        """The chunks of the utterance in progress (pre-roll included); empty outside speech."""
        return list(self._cur) if self._cur else []

    def push(self, prob: float, chunk: np.ndarray) -> list[Utterance]:
        c = self.cfg
        chunk = np.asarray(chunk, np.float32).reshape(-1)
        out: list[Utterance] = []
        idx = self._pos
        self._pos += 1
        if self._cur is None:
            if prob >= c.threshold:
                self._cur = list(self._pre) + [chunk]
                self._start = idx - len(self._pre)
                self._pre.clear()
                self._speech_chunks, self._silence = 1, 0
            else:
                self._pre.append(chunk)
            return out
        self._cur.append(chunk)
        if prob >= c.neg_threshold_value:
            self._speech_chunks += 1
            self._silence = 0
        else:
            self._silence += 1
        if self._silence >= self._min_sil:
            keep = len(self._cur) - self._silence + self._pad
            out.extend(self._finish(keep, forced=False))
        elif len(self._cur) >= self._max:
            out.extend(self._finish(len(self._cur), forced=True))
            self._cur, self._start, self._speech_chunks, self._silence = [], self._pos, 0, 0
        return out

    def flush(self) -> list[Utterance]:
        """End of stream: emit the utterance in progress, if long enough."""
        if self._cur is None or not self._cur:
            self._cur = None
            return []
        keep = len(self._cur) - max(0, self._silence - self._pad)
        return self._finish(keep, forced=False)

    def _finish(self, keep: int, forced: bool) -> list[Utterance]:
        c, cur, start = self.cfg, self._cur[:keep], self._start
        trailing_sil = 0 if forced else max(0, min(self._silence, self._pad))
        speech = self._speech_chunks
        # the silence chunks kept as padding were counted in neither; cuts ignore min_speech
        leftover = self._cur[keep:]
        self._cur = None
        self._speech_chunks = self._silence = 0
        # silence chunks after the cut feed the next pre-roll
        for ch in leftover[-self._pre.maxlen:] if self._pre.maxlen else []:
            self._pre.append(ch)
        if not forced and speech < self._min_speech:
            self.dropped_short += 1
            return []
        if not cur:
            return []
        sec = c.chunk / c.sample_rate
        end_chunks = start + len(cur)
        return [Utterance(np.concatenate(cur), start * sec, end_chunks * sec, forced,
                          (end_chunks - trailing_sil) * sec)]
