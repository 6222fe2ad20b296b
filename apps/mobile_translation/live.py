"""Live speech-to-speech translation on ``sdk.pipeline.StreamingPipeline``:

    microphone ─> segment (VAD + end-pointing) ─[backlog]─> recognise ─> translate
               ─> synthesize ─> speaker ┐
         ▲                               │ mute gate (while it plays, + gate_tail_ms)
         └───────────────────────────────┘

- **capture** (PortAudio's thread, inside ``sdk.pipeline.MicrophoneSource``): its callback
  only copies each buffer into a bounded ring (``buffer_s`` seconds, drop-oldest) and counts
  PortAudio's status flags; it never blocks. ``live_source.ReopeningMicrophone`` cuts it into
  32 ms chunks stamped with their capture time and reopens a lost device with back-off.
- **segment**: VAD + end-pointing (and, while speech lasts, the incremental recogniser's
  feed). Chunks captured while the speaker plays are discarded by the pipeline's gate (by
  capture time), so the app never translates its own voice.
- **recognise / translate / synthesize**: one worker each, so the next utterance is
  recognised while the last one is translated and spoken.

Lag policy: at most ``max_backlog`` finished utterances wait in front of the recogniser;
when another one arrives the *oldest* waiting one is dropped (the pipeline counts it, and a
``lag`` event names it), so the delay between speech and its translation stays bounded.
If the segmenter itself falls more than ``buffer_s`` behind, the ring drops the oldest
audio (``audio_dropped_s``). Every counter comes from the pipeline's ``StreamStats``, the
device's and the speaker's own counts.
"""
from __future__ import annotations

import collections
import time
from typing import Any, Callable

from apps.mobile_translation.asr.base import SAMPLE_RATE
from apps.mobile_translation.engines import SpeechStack
from apps.mobile_translation.live_config import LiveConfig, _default_sink, _default_source, _device_rate
from apps.mobile_translation.live_source import ReopeningMicrophone
from apps.mobile_translation.live_stages import Segmenter, SpeakerOutput, recognise, synthesize, translate
from sdk import logger
from sdk.closing import Closing
from sdk.pipeline import Gate, Stage, StreamEvent, StreamingPipeline

__all__ = ["LiveConfig", "LiveTranslator"]


class LiveTranslator(Closing):
    """``run(duration_s)`` or ``start()`` / ``stop()``; events go to ``on_event(dict)``.

    ``engines``, ``vad``, ``source_factory(sample_rate, block_size, device, buffer_s)`` and
    ``sink_factory(sample_rate, device)`` can be injected (tests use fakes).
    """

    def __init__(self, config: LiveConfig | None = None, on_event: Callable[[dict], Any] | None = None,
                 engines=None, vad=None, source_factory=None, sink_factory=None):
        self.cfg = config or LiveConfig()
        self.on_event = on_event or (lambda ev: None)
        self._own_engines = engines is None
        self.engines = engines or SpeechStack(self.cfg.engines)
        if vad is None:
            from apps.mobile_translation.vad import SileroVAD

            vad = SileroVAD()
        self.vad = vad
        self.source_factory = source_factory or _default_source
        self.sink_factory = sink_factory or _default_sink
        self.gate = Gate("mute-microphone")
        self.warm_up_s = 0.0
        self._pipe: StreamingPipeline | None = None
        self._mic: ReopeningMicrophone | None = None
        self._seg: Segmenter | None = None
        self._out: SpeakerOutput | None = None
        if self.cfg.warm_up:   # the first utterance is then no slower than the rest
            t0 = time.perf_counter()
            for engine in (self.engines.asr, getattr(self.engines, "mt", None)):
                if hasattr(engine, "warm_up"):
                    engine.warm_up()
            self.warm_up_s = time.perf_counter() - t0

    # -- events -----------------------------------------------------------------------
    def _emit(self, event: str, **kw) -> None:
        ev = {"event": event, "t": round(time.monotonic(), 3), **kw}
        try:
            self.on_event(ev)
        except Exception as exc:  # a broken display must not stop the translator
            logger.warning("on_event handler failed: %s", exc)

    def _stream_event(self, ev: StreamEvent) -> None:
        if ev.kind == "drop" and ev.stage == "recognise":
            h = ev.item
            cancel = getattr(h.transcript, "cancel", None)
            if cancel is not None:
                cancel()
            if ev.message.startswith("stream stopped"):   # stop(drain=False): not a lag
                return
            st = self._pipe.stats.stages["recognise"] if self._pipe is not None else None
            age = time.monotonic() - h.t_capture
            self._emit("lag", message=f"processing is behind: dropped the oldest waiting utterance "
                       f"({h.utt.duration_s:.1f} s of speech, {age:.1f} s old)",
                       backlog=(st.queued + 1) if st else None, dropped=st.dropped if st else None,
                       oldest_age_s=round(age, 3))
        elif ev.kind == "error":
            self._emit("error", message=ev.message, stage=ev.stage)

    # -- control ----------------------------------------------------------------------
    def _build(self) -> StreamingPipeline:
        eng, cfg = self.engines, self.cfg
        # _device_rate looked up when called (tests replace it in this module)
        self._mic = ReopeningMicrophone(cfg, self.source_factory, lambda dev: _device_rate(dev), self._emit)
        self._seg = seg = Segmenter(self.vad, cfg.endpoint, eng.asr, cfg.streaming_asr, self._emit,
                                    cfg.decode_on_pause)
        self._out = SpeakerOutput(self.sink_factory, cfg.output_device, self.gate, cfg.gate_tail_ms, self._emit)
        stages = [Stage("segment", seg, queue_size=max(2, int(2 * SAMPLE_RATE / 512)), drop="block", fan_out=True,
                        flush=seg.flush, gate=self.gate, on_gated=seg.gated),
                  Stage("recognise", recognise(eng.asr), queue_size=cfg.max_backlog, drop="oldest"),
                  Stage("translate", translate(eng.mt))]
        if cfg.speak:
            stages.append(Stage("synthesize", synthesize(eng.tts)))
        return StreamingPipeline(self._mic, stages, self._out, on_event=self._stream_event)

    def start(self) -> "LiveTranslator":
        if self._pipe is not None and self._pipe.running:
            raise RuntimeError("this LiveTranslator is already running")
        self._pipe = self._build().start()
        return self

    def stop(self, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop listening; with ``drain`` the utterances already heard are still translated."""
        if self._pipe is None:
            return
        self._pipe.stop(drain=drain, timeout=timeout)
        if self._seg is not None:
            self._seg.cancel_stream()

    def run(self, duration_s: float | None = None) -> dict:
        """Run until ``duration_s`` passes (or Ctrl-C / a fatal device error); returns :meth:`stats`."""
        self.start()
        try:
            end = None if duration_s is None else time.monotonic() + duration_s
            while not self._pipe.join(0.05) and (end is None or time.monotonic() < end):
                pass
        finally:
            self.stop()
        if self._mic is not None and self._mic.error is not None:
            raise self._mic.error
        return self.stats()

    # -- reporting ----------------------------------------------------------------------
    def stats(self) -> dict:
        st = self._pipe.stats if self._pipe is not None else None
        stage = (lambda name: st.stages.get(name)) if st is not None else (lambda name: None)
        seg, rec, mt, tts = stage("segment"), stage("recognise"), stage("translate"), stage("synthesize")
        mic, out = self._mic, self._out

        def n(s, key):
            return int(getattr(s, key)) if s is not None else 0

        def summary(lat):
            c = lat.count if lat is not None else 0
            return {"count": c, "mean_s": round(lat.mean_ms / 1e3, 3) if c else None,
                    "max_s": round(lat.max_ms / 1e3, 3) if c else None}

        heard_s = self._seg.speech_s if self._seg is not None else 0.0
        rtf = {k: round(v / heard_s, 3) for k, v in self.stage_s.items()} if heard_s else {}
        status = dict(mic.status_counts) if mic else {}
        for k, v in (out.status_counts if out else {}).items():
            status[k] = status.get(k, 0) + v
        return {
            "streams_opened": mic.streams_opened if mic else 0, "device_errors": mic.device_errors if mic else 0,
            "reopens": mic.reopens if mic else 0, "chunks": n(seg, "received"), "gated_chunks": n(seg, "gated"),
            "partials": self._seg.partials if self._seg else 0,
            "lost_in_device_error": self._seg.lost_in_device_error if self._seg else 0,
            "utterances": n(seg, "emitted"), "dropped_backlog": n(rec, "dropped"),
            "empty_transcripts": n(rec, "consumed"), "translated": n(mt, "emitted"),
            "played": out.played if out else 0, "output_errors": out.output_errors if out else 0,
            "processing_errors": st.errors if st else 0,
            "status_flags": {k: int(v) for k, v in status.items() if v},
            "audio_dropped_s": round((mic.dropped_samples if mic else 0) / SAMPLE_RATE, 3),
            "dropped_short": self._seg.endpointer.dropped_short if self._seg else 0,
            "backlog_limit": self.cfg.max_backlog, "max_backlog_seen": n(rec, "high_water"),
            "pending": n(rec, "queued"),
            # end of speech (capture time) -> translated text, -> first synthesized sample
            "latency_text": summary(mt.age if mt else None), "latency_first_audio": summary(tts.age if tts else None),
            "stages": {k: v.to_dict() for k, v in st.stages.items()} if st else {},
            "rtf": rtf, "speech_s": round(heard_s, 3), "speaker_underruns": out.underruns if out else 0,
        }

    @property
    def stage_s(self) -> dict[str, float]:
        """Seconds spent: warming up, and in each stage (from the pipeline's per-stage latency)."""
        st = self._pipe.stats.stages if self._pipe is not None else {}
        return {"warm_up": self.warm_up_s, **{k: v.latency.mean_ms * v.latency.count / 1e3 for k, v in st.items()}}

    @property
    def counters(self) -> collections.Counter:
        """The integer entries of :meth:`stats` (a Counter: a missing key reads 0)."""
        return collections.Counter({k: v for k, v in self.stats().items() if isinstance(v, int)})

    def close(self) -> None:
        if self._pipe is not None and self._pipe.running:
            self.stop(drain=False)
        if hasattr(self.vad, "close"):
            self.vad.close()
        if self._own_engines:
            self.engines.close()
