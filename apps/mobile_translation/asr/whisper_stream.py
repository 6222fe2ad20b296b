"""Partial transcripts while the person speaks: Whisper re-decodes the growing utterance.

A background thread decodes the audio fed so far whenever ``step_s`` more has arrived
(greedy, no timestamps, no fallback: a partial is a preview). Words are committed with the
**LocalAgreement-2** policy of whisper_streaming (Macháček et al., 2023): a word is
committed once two consecutive hypotheses agree on it and on everything before it; the
rest is tentative. Each update calls ``on_partial(committed, tentative, audio_s)``.

``finish(speech_end_s)`` gives the final transcript at the end of speech. The end-pointer
waits for ``min_silence_ms`` of silence before it ends an utterance, so the last partial
often already covers all of the speech: it is then the final text (nothing is left to
decode); otherwise the utterance is decoded once more, in full, with the recogniser's
own settings (timestamps) and one fallback temperature.

A decode in flight that cannot cover the speech is cancelled rather than waited for (at
the next decoder step: the encoder run itself is not interrupted): by ``finish`` when its
audio ends before the speech does, and by ``pause_hint`` (the speaker paused) when more
audio has arrived since it started, so that the decode of everything said starts sooner.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import replace

import numpy as np

from apps.mobile_translation.asr.base import SAMPLE_RATE, Segment, Transcript
from apps.mobile_translation.asr.whisper_decode import DecodeCancelled

_WORD = re.compile(r"[^\w']+")


def _key(word: str) -> str:
    return _WORD.sub("", word.lower())


def agreed_prefix(a: list[str], b: list[str]) -> int:
    """Length of the longest common prefix of two word lists (case and punctuation ignored)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if _key(x) != _key(y):
            break
        n += 1
    return n


class WhisperStream:
    incremental = True
    takes_speech_end = True

    def __init__(self, rec, on_partial=None, step_s: float = 0.8, min_audio_s: float = 0.6):
        self.rec, self.on_partial = rec, on_partial
        self.step, self.min_audio = int(step_s * SAMPLE_RATE), int(min_audio_s * SAMPLE_RATE)
        self.partial_opts = replace(rec.options, beam_size=1, temperatures=(0.0,), timestamps=False)
        # the final decode keeps one fallback step: a full temperature ladder (six decodes) on a
        # fragment that never passes the checks would hold the conversation up for seconds
        self.final_opts = replace(rec.options, temperatures=tuple(rec.options.temperatures[:1]) + (0.4,), best_of=1)
        self._chunks: list[np.ndarray] = []
        self._n = 0
        self._decoded_n = 0          # samples covered by the last hypothesis
        self._scheduled_n = 0
        self.committed: list[str] = []
        self._prev: list[str] = []
        self._last_text = ""
        self._last_ok = False
        self._last_final: Transcript | None = None   # the last decode, when it ran with the final settings
        self.updates = 0
        self.partial_compute_s = 0.0
        self._cv = threading.Condition()
        self._busy = False
        self._urgent = False         # decode now (the speaker paused), whatever the step
        self._abort = False          # the decode in flight is stale: end it at its next step
        self.cancelled_decodes = 0
        self._closed = False
        self._cancelled = False
        self._thread = threading.Thread(target=self._loop, name="ew-whisper-partials", daemon=True)
        self._thread.start()

    def feed(self, chunk: np.ndarray) -> None:
        with self._cv:
            self._chunks.append(np.asarray(chunk, np.float32).reshape(-1))
            self._n += len(self._chunks[-1])
            if self._n >= self.min_audio and self._n - self._scheduled_n >= self.step:
                self._cv.notify()

    def pause_hint(self) -> None:
        """The speaker seems to have stopped: decode everything fed so far now, so that when the
        end-pointer's silence has passed the last partial already covers all of the speech."""
        with self._cv:
            if self._n >= self.min_audio and self._n > self._scheduled_n:
                self._urgent = True
                self._abort = self._busy   # the one in flight misses what was said since it began
                self._cv.notify()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until no decode runs or is due (a caller feeding recorded audio faster than real
        time gets the partials a fast enough recogniser would give); False on timeout."""
        end = time.monotonic() + timeout
        with self._cv:
            while not self._closed and (self._busy or self._ready()):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.05))
        return True

    def _ready(self) -> bool:
        return self._n >= self.min_audio and (self._urgent or self._n - self._scheduled_n >= self.step)

    def _audio(self) -> np.ndarray:
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self._ready():
                    self._cv.wait()
                if self._closed:
                    return
                # a pause decode is the final decode started early: the final settings (timestamps,
                # fallback), so that when no more speech comes its text is what finish() would compute
                final = self._urgent
                audio, self._scheduled_n, self._busy, self._urgent = self._audio(), self._n, True, False
                self._abort = False
            try:
                t0 = time.perf_counter()
                results: list = []
                try:
                    tr = self.rec.transcribe(audio, options=self.final_opts if final else self.partial_opts,
                                             results=results, stop=lambda: self._abort or self._cancelled)
                    text = tr.text
                except DecodeCancelled:
                    self.cancelled_decodes += 1
                    continue
                finally:
                    self.partial_compute_s += time.perf_counter() - t0
                thr = self.partial_opts.compression_ratio_threshold
                self._last_ok = all(not r.looped and (thr is None or r.compression_ratio <= thr) for r in results)
                self._last_final = tr if final else None
                self._update(text, len(audio))
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def _update(self, text: str, covered: int) -> None:
        if self._cancelled:
            return
        words = text.split()
        n = len(self.committed)
        self.committed += words[n:n + agreed_prefix(self._prev[n:], words[n:])]
        self._prev, self._last_text, self._decoded_n = words, text, covered
        self.updates += 1
        if self.on_partial is not None:
            self.on_partial(" ".join(self.committed), " ".join(words[len(self.committed):]), covered / SAMPLE_RATE)

    def _stop_thread(self, need: int = 0) -> None:
        """Stop the partials; a decode in flight is waited for only if it covers ``need`` samples."""
        with self._cv:
            if self._busy and self._scheduled_n < need:
                self._abort = True
            self._closed = True
            self._cv.notify_all()
            while self._busy:
                self._cv.wait(0.05)

    def finish(self, speech_end_s: float | None = None) -> Transcript:
        """The final transcript; reuses the last partial when it covered all of the speech."""
        need = int(speech_end_s * SAMPLE_RATE) if speech_end_s is not None else 0
        self._stop_thread(need if need > 0 else self._n)
        audio = self._audio()
        t0 = time.perf_counter()
        covered = need > 0 and self._decoded_n >= need
        if covered and self._last_final is not None:
            return self._last_final
        if covered and self._last_ok:
            text = self._last_text.strip()
            segs = [Segment(text, 0.0, self._decoded_n / SAMPLE_RATE)] if text else []
            return Transcript(text, segs, len(audio) / SAMPLE_RATE, time.perf_counter() - t0)
        return self.rec.transcribe(audio, options=self.final_opts)

    def cancel(self) -> None:
        """Drop the utterance without waiting for a decode in flight (the listener calls this)."""
        with self._cv:
            self._closed = self._cancelled = True
            self._chunks, self._n = [], 0
            self._cv.notify_all()
