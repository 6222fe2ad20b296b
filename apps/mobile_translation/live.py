"""Live speech-to-speech translation: microphone → VAD → end-pointing → ASR → MT → TTS → speaker.

Threads and buffers:

- **capture** (PortAudio's thread, inside ``sdk.pipeline.MicrophoneSource``): its callback
  only copies each buffer into a bounded ring (``buffer_s`` seconds, drop-oldest) and counts
  PortAudio's status flags; it never blocks.
- **listener** (ours): reads 512-sample blocks, runs the VAD and the end-pointer, and queues
  finished utterances. While the speaker plays (plus ``gate_tail_ms``) the microphone is
  gated: its audio is discarded, so the app never translates its own voice.
- **worker** (ours): recognises, translates and synthesizes one utterance at a time and
  writes the speech to ``sdk.pipeline.SpeakerSink``.

Lag policy: at most ``max_backlog`` finished utterances wait for the worker; when another
one arrives the *oldest* waiting one is dropped (counted, and a ``lag`` event names it), so
the delay between speech and its translation stays bounded by about
``(max_backlog + 1) x`` the time to process one utterance, never growing. If the listener
itself falls more than ``buffer_s`` behind, the ring drops the oldest audio (counted as
``audio_dropped_s``).

Device loss (the input stream stops, or PortAudio raises) and a refused sample rate raise
``AudioDeviceError`` inside the listener; it is reported as a ``device_error`` event and
the stream is reopened with exponential back-off (``reopen_initial_s`` doubling up to
``reopen_max_s``). A device that refuses 16 kHz is reopened at its own default rate and
resampled.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

import numpy as np
from apps.mobile_translation.asr.base import SAMPLE_RATE
from apps.mobile_translation.endpoint import Endpointer, Utterance
from apps.mobile_translation.engines import Engines
from apps.mobile_translation.live_config import (LiveConfig, _default_sink, _default_source, _device_rate,
                                                 _Pending)
from apps.mobile_translation.mt.base import Translation
from apps.mobile_translation.vad import CHUNK
from sdk import logger
from sdk.errors import AudioDeviceError


class LiveTranslator:
    """``run(duration_s)`` or ``start()`` / ``stop()``; events go to ``on_event(dict)``.

    ``engines``, ``vad``, ``source_factory(sample_rate, block_size, device, buffer_s)`` and
    ``sink_factory(sample_rate, device)`` can be injected (tests use fakes).
    """

    def __init__(self, config: LiveConfig | None = None, on_event: Callable[[dict], Any] | None = None,
                 engines=None, vad=None, source_factory=None, sink_factory=None):
        self.cfg = config or LiveConfig()
        self.on_event = on_event or (lambda ev: None)
        self._own_engines = engines is None
        self.engines = engines or Engines(self.cfg.engines)
        if vad is None:
            from apps.mobile_translation.vad import SileroVAD

            vad = SileroVAD()
        self.vad = vad
        self.source_factory = source_factory or _default_source
        self.sink_factory = sink_factory or _default_sink
        self.endpointer = Endpointer(self.cfg.endpoint)
        self._pending: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._listening_done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sink = None
        self._source = None
        self._gate_until = 0.0
        self._error: BaseException | None = None
        self.counters = collections.Counter()
        self.status_counts: collections.Counter = collections.Counter()
        self.audio_dropped_samples = 0
        self.lat_text: list[float] = []
        self.lat_audio: list[float] = []
        self.stage_s = collections.Counter()
        self.speech_s = 0.0
        self.max_backlog_seen = 0
        self.sink_underruns = 0
        self._streaming = self.cfg.streaming_asr and hasattr(self.engines.asr, "stream")
        self._asr_stream = None
        self._fed = 0
        if self.cfg.warm_up and hasattr(self.engines.asr, "warm_up"):
            t0 = time.perf_counter()
            self.engines.asr.warm_up()   # the first utterance is then no slower than the rest
            self.stage_s["warm_up"] = time.perf_counter() - t0

    # -- events -----------------------------------------------------------------------
    def _emit(self, event: str, **kw) -> None:
        ev = {"event": event, "t": round(time.monotonic(), 3), **kw}
        try:
            self.on_event(ev)
        except Exception as exc:  # a broken display must not stop the translator
            logger.warning("on_event handler failed: %s", exc)

    # -- listener ---------------------------------------------------------------------
    def _open_source(self, rate: int):
        return self.source_factory(rate, CHUNK * rate // SAMPLE_RATE, self.cfg.input_device, self.cfg.buffer_s)

    def _listen_once(self, rate: int) -> None:
        """Read the stream until stop or device loss (AudioDeviceError)."""
        src = self._open_source(rate)
        self._source = src
        try:
            if hasattr(src, "open"):
                src.open()
            self.counters["streams_opened"] += 1
            self._emit("stream_open", sample_rate=rate)
            # a new stream is a discontinuity: forget any utterance cut by the loss of the last one
            if self.endpointer.in_speech:
                self.counters["lost_in_device_error"] += 1
            self.endpointer.reset()
            self._cancel_stream()
            if hasattr(self.vad, "reset"):
                self.vad.reset()
            pos = 0  # samples of the 16 kHz stream
            carry = np.zeros(0, np.float32)
            for block in src:
                if self._stop.is_set():
                    return
                x = np.asarray(block.samples, np.float32).reshape(-1)
                if block.sample_rate != SAMPLE_RATE:
                    from sdk.preprocess import resample

                    x = resample(x, block.sample_rate, SAMPLE_RATE).astype(np.float32)
                x = np.concatenate([carry, x]) if len(carry) else x
                n = len(x) // CHUNK
                carry = x[n * CHUNK:]
                for i in range(n):
                    chunk = x[i * CHUNK:(i + 1) * CHUNK]
                    pos += CHUNK
                    self.counters["chunks"] += 1
                    if time.monotonic() < self._gate_until:
                        self.counters["gated_chunks"] += 1
                        if self.endpointer.in_speech:
                            self.endpointer.reset()
                            self._cancel_stream()
                        continue
                    prob = self.vad(chunk)
                    utts = self.endpointer.push(prob, chunk)
                    for utt in utts:
                        # the chunk's last sample was captured at block.t_capture (approximately)
                        behind = (pos - utt.speech_end_s * SAMPLE_RATE) / SAMPLE_RATE
                        utt.t_speech_end = block.t_capture - behind - len(carry) / SAMPLE_RATE
                        if self._asr_stream is not None:
                            t0 = time.perf_counter()
                            utt.transcript = self._finish_stream(utt)
                            self.stage_s["asr_finish"] += time.perf_counter() - t0
                            self._asr_stream, self._fed = None, 0
                        self._enqueue(utt)
                    if not utts and not self.endpointer.in_speech:
                        self._cancel_stream()  # a click shorter than min_speech was dropped
                    self._stream_feed()
            if not self._stop.is_set():
                raise AudioDeviceError("the input stream stopped delivering audio (device unplugged or lost)")
        except AudioDeviceError:
            raise
        except Exception as exc:  # PortAudio errors surface as various types
            if self._stop.is_set():
                return
            raise AudioDeviceError(f"audio input failed: {exc}") from exc
        finally:
            self._collect_source_stats(src)
            if hasattr(src, "close"):
                src.close()
            self._source = None

    def _stream_feed(self) -> None:
        """Feed the utterance in progress to an incremental recogniser (listener thread)."""
        if not self._streaming or not self.endpointer.in_speech:
            return
        chunks = self.endpointer.current_chunks
        if self._asr_stream is None:
            self._asr_stream, self._fed = self._new_stream(), 0
        t0 = time.perf_counter()
        for ch in chunks[self._fed:]:
            self._asr_stream.feed(ch)
        self.stage_s["asr_stream"] += time.perf_counter() - t0
        self._fed = len(chunks)

    def _new_stream(self):
        asr = self.engines.asr
        if getattr(asr, "long_form", False):  # Whisper: partial transcripts while the person speaks
            return asr.stream(on_partial=self._on_partial)
        return asr.stream()

    def _on_partial(self, committed: str, tentative: str, audio_s: float) -> None:
        self.counters["partials"] += 1
        self._emit("partial", committed=committed, tentative=tentative, audio_s=round(audio_s, 3))

    def _finish_stream(self, utt: Utterance):
        """The utterance's transcript, or (Whisper) a call that finishes it on the worker thread,
        so the listener never waits for a decode and keeps hearing the next speaker."""
        stream = self._asr_stream
        if getattr(stream, "takes_speech_end", False):
            return _Pending(stream, utt.speech_end_s - utt.start_s)
        return stream.finish()

    def _cancel_stream(self) -> None:
        if self._asr_stream is not None:
            self._asr_stream.cancel()
            self._asr_stream, self._fed = None, 0

    def _collect_source_stats(self, src) -> None:
        for k, v in (getattr(src, "status_counts", None) or {}).items():
            self.status_counts[k] += int(v)
        ring = getattr(src, "ring", None)
        if ring is not None:
            self.audio_dropped_samples += int(getattr(ring, "dropped_samples", 0))

    def _listener(self) -> None:
        delay, failures, rate = self.cfg.reopen_initial_s, 0, SAMPLE_RATE
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._listen_once(rate)
                return
            except AudioDeviceError as exc:
                if self._stop.is_set():
                    return
                if time.monotonic() - started > 5 * self.cfg.reopen_max_s:  # it ran well for a while
                    failures, delay = 0, self.cfg.reopen_initial_s
                failures += 1
                self.counters["device_errors"] += 1
                msg = str(exc)
                if rate == SAMPLE_RATE and "rate" in msg.lower():
                    dev_rate = _device_rate(self.cfg.input_device)
                    if dev_rate and dev_rate != SAMPLE_RATE:
                        rate = dev_rate
                        msg += f"; reopening at the device's own {dev_rate} Hz and resampling"
                self._emit("device_error", message=msg, retry_in_s=delay, failures=failures)
                logger.warning("audio input: %s; reopening in %.1f s", msg, delay)
                if self.cfg.max_reopen_attempts is not None and failures > self.cfg.max_reopen_attempts:
                    self._error = exc
                    self._stop.set()
                    with self._cv:
                        self._cv.notify_all()
                    return
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.cfg.reopen_max_s)
                self.counters["reopens"] += 1
                self._emit("reopened", message=f"reopening the input stream (attempt {failures})")

    def _enqueue(self, utt: Utterance) -> None:
        self.counters["utterances"] += 1
        utt.t_enqueued = time.monotonic()
        with self._cv:
            if len(self._pending) >= self.cfg.max_backlog:
                old = self._pending.popleft()
                if isinstance(old.transcript, _Pending):
                    old.transcript.cancel()
                self.counters["dropped_backlog"] += 1
                age = time.monotonic() - old.t_speech_end
                self._emit("lag", message=f"processing is behind: dropped the oldest waiting utterance "
                           f"({old.duration_s:.1f} s of speech, {age:.1f} s old)", backlog=len(self._pending) + 1,
                           dropped=self.counters["dropped_backlog"], oldest_age_s=round(age, 3))
            self._pending.append(utt)
            self.max_backlog_seen = max(self.max_backlog_seen, len(self._pending))
            self._cv.notify()

    # -- worker -----------------------------------------------------------------------
    def _worker(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._listening_done.is_set():
                    self._cv.wait(0.2)
                if not self._pending:
                    return
                utt = self._pending.popleft()
            try:
                self._process(utt)
            except Exception as exc:
                self.counters["processing_errors"] += 1
                self._emit("error", message=f"{type(exc).__name__}: {exc}")
                logger.warning("utterance failed: %s", exc)

    def _process(self, utt: Utterance) -> None:
        eng = self.engines
        t_start = time.monotonic()
        t0 = time.perf_counter()
        if isinstance(utt.transcript, _Pending):
            utt.transcript = utt.transcript()
            self.stage_s["asr_finish"] += time.perf_counter() - t0
        tr = utt.transcript if utt.transcript is not None else eng.asr.transcribe(utt.audio)
        t1 = time.perf_counter()
        self.stage_s["asr"] += tr.compute_s if utt.transcript is not None else t1 - t0
        self.speech_s += utt.duration_s
        if not tr.text.strip():
            self.counters["empty_transcripts"] += 1
            return
        mt = eng.mt.translate(tr.text) if eng.mt is not None else Translation(tr.text, tr.text, 0.0)
        t2 = time.perf_counter()
        self.stage_s["mt"] += t2 - t1
        lat_text = time.monotonic() - utt.t_speech_end
        self.lat_text.append(lat_text)
        self.counters["translated"] += 1
        ev = {"text": tr.text, "translation": mt.text, "start_s": round(utt.start_s, 3),
              "end_s": round(utt.end_s, 3), "latency_text_s": round(lat_text, 3), "forced_cut": utt.forced,
              # where the latency went: end of speech -> queued (end-pointing and the listener),
              # queued -> the worker took it, and recognition + translation
              "endpoint_s": round(utt.t_enqueued - utt.t_speech_end, 3), "queued_s": round(t_start - utt.t_enqueued, 3),
              "asr_mt_s": round(time.monotonic() - t_start, 3)}
        if self.cfg.speak and mt.text:
            sp = eng.tts.synthesize(mt.text)
            self.stage_s["tts"] += time.perf_counter() - t2
            if len(sp.audio):
                self._play(sp.audio, sp.sample_rate)
                lat_audio = time.monotonic() - utt.t_speech_end
                self.lat_audio.append(lat_audio)
                ev["latency_audio_s"] = round(lat_audio, 3)
        self._emit("utterance", **ev)

    def _play(self, audio: np.ndarray, sr: int) -> None:
        try:
            if self._sink is None or getattr(self._sink, "sample_rate", sr) != sr:
                self._sink = self.sink_factory(sr, self.cfg.output_device)
                if hasattr(self._sink, "open"):
                    self._sink.open()
            queued = getattr(getattr(self._sink, "ring", None), "available", 0) / sr
            # gate the microphone while this plays, plus a tail for the room's echo
            self._gate_until = max(self._gate_until, time.monotonic()) + queued + len(audio) / sr \
                + self.cfg.gate_tail_ms / 1000.0
            self._sink.write(audio)
            self.counters["played"] += 1
        except AudioDeviceError as exc:
            self.counters["output_errors"] += 1
            self._emit("device_error", message=f"speaker: {exc}")
            self._sink = None

    # -- control ----------------------------------------------------------------------
    def start(self) -> "LiveTranslator":
        self._stop.clear()
        self._listening_done.clear()
        self._threads = [threading.Thread(target=self._listener, name="ew-listen", daemon=True),
                         threading.Thread(target=self._worker, name="ew-translate", daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def stop(self, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop listening; with ``drain`` the utterances already heard are still translated."""
        self._stop.set()
        src = self._source
        if src is not None and hasattr(src, "close"):
            src.close()
        listener, worker = (self._threads + [None, None])[:2]
        if listener is not None:
            listener.join(timeout)
        for u in self.endpointer.flush():  # speech in progress when stopped
            u.t_speech_end = time.monotonic()
            if self._asr_stream is not None:
                u.transcript = self._finish_stream(u)
                self._asr_stream, self._fed = None, 0
            self._enqueue(u)
        with self._cv:
            if not drain:
                self.counters["dropped_at_stop"] += len(self._pending)
                for u in self._pending:
                    if isinstance(u.transcript, _Pending):
                        u.transcript.cancel()
                self._pending.clear()
            self._listening_done.set()
            self._cv.notify_all()
        if worker is not None:
            worker.join(timeout)
        self._cancel_stream()
        if self._sink is not None:
            self.sink_underruns += int(getattr(self._sink, "underruns", 0))
            for k, v in (getattr(self._sink, "status_counts", None) or {}).items():
                self.status_counts[k] += int(v)
            try:
                self._sink.close()
            finally:
                self._sink = None

    def run(self, duration_s: float | None = None) -> dict:
        """Run until ``duration_s`` passes (or Ctrl-C / a fatal device error); returns :meth:`stats`."""
        self.start()
        try:
            end = None if duration_s is None else time.monotonic() + duration_s
            while not self._stop.is_set() and (end is None or time.monotonic() < end):
                time.sleep(0.05)
        finally:
            self.stop()
        if self._error is not None:
            raise self._error
        return self.stats()

    def stats(self) -> dict:
        def summary(xs):
            return {"count": len(xs), "mean_s": round(float(np.mean(xs)), 3) if xs else None,
                    "max_s": round(float(np.max(xs)), 3) if xs else None}

        rtf = {k: round(v / self.speech_s, 3) for k, v in self.stage_s.items()} if self.speech_s else {}
        return {
            **{k: int(v) for k, v in self.counters.items()},
            "status_flags": {k: int(v) for k, v in self.status_counts.items() if v},
            "audio_dropped_s": round(self.audio_dropped_samples / SAMPLE_RATE, 3),
            "dropped_short": self.endpointer.dropped_short,
            "backlog_limit": self.cfg.max_backlog, "max_backlog_seen": self.max_backlog_seen,
            "pending": len(self._pending),
            "latency_text": summary(self.lat_text), "latency_first_audio": summary(self.lat_audio),
            "rtf": rtf, "speech_s": round(self.speech_s, 3), "speaker_underruns": self.sink_underruns,
        }

    def close(self) -> None:
        if any(t.is_alive() for t in self._threads):
            self.stop(drain=False)
        if hasattr(self.vad, "close"):
            self.vad.close()
        if self._own_engines:
            self.engines.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
