"""Speech recognition with PocketSphinx and the US-English model its pip package ships.

The default recogniser: no download, about 1 s to load, real-time factor ~0.3 on one
core. Needs ``pip install 'edgewise[speech]'`` (pocketsphinx). English only.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from apps.mobile_translation.asr.base import SAMPLE_RATE, Segment, Transcript, check_audio
from sdk.closing import Closing
from sdk.errors import require

_FILLERS = {"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]", "[BREATH]", "[COUGH]", "[UH]", "[UM]"}


class PocketSphinxRecognizer(Closing):
    """``transcribe(audio_f32_16k) -> Transcript`` with word timestamps."""

    name = "pocketsphinx"

    # "fast": no second (flat-lexicon) pass, 2 Gaussians per senone, at most 3000 active
    # HMMs per frame. Measured on 8 LJSpeech recordings: WER 0.214 at CPU RTF 0.20, against
    # 0.206 at 0.48 for PocketSphinx's defaults ("accurate").
    PRESETS = {"fast": {"fwdflat": False, "topn": 2, "maxhmmpf": 3000}, "accurate": {}}

    def __init__(self, lang: str = "en", preset: str = "fast", **config):
        if lang.split("-")[0] != "en":
            raise ValueError(f"the bundled PocketSphinx model is US English; expected lang 'en', got {lang!r}")
        if preset not in self.PRESETS:
            raise ValueError(f"preset must be one of {sorted(self.PRESETS)}, got {preset!r}")
        ps = require("pocketsphinx", "speech", "speech recognition with PocketSphinx")
        config = {**self.PRESETS[preset], **config}
        config.setdefault("loglevel", "FATAL")
        self.preset = preset
        self.lang = "en"
        self._decoder = ps.Decoder(**config)
        self._frate = int(self._decoder.config["frate"])
        self._lock = threading.Lock()
        self._warm = False  # live cepstral mean normalisation has seen a whole utterance

    def transcribe(self, audio_f32_16k: np.ndarray) -> Transcript:
        audio = check_audio(audio_f32_16k)
        t0 = time.perf_counter()
        pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        with self._lock:
            d = self._decoder
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            self._warm = True
            return self._result(len(audio), time.perf_counter() - t0)

    def _result(self, n_samples: int, compute_s: float) -> Transcript:
        d = self._decoder
        hyp = d.hyp()
        segs = []
        for s in d.seg():
            word = s.word
            if word in _FILLERS or word.startswith("++") or word.startswith("["):
                continue
            word = word.split("(")[0]  # alternative pronunciations: "read(2)"
            segs.append(Segment(word, s.start_frame / self._frate, (s.end_frame + 1) / self._frate))
        text = " ".join(s.text for s in segs) if segs else (hyp.hypstr if hyp else "")
        return Transcript(text=text, segments=segs, audio_s=n_samples / SAMPLE_RATE, compute_s=compute_s)

    def stream(self) -> "PocketSphinxStream":
        """Incremental recognition: ``feed(chunk)`` while the speaker talks, ``finish()`` at the
        end, so only the last chunk's search remains after the end of speech."""
        return PocketSphinxStream(self)

    def close(self) -> None:
        self._decoder = None


class PocketSphinxStream:
    """One utterance decoded as it arrives; holds the recogniser's decoder until finished.

    Incremental decoding normalises the cepstrum with a running mean, which is poor before
    the decoder has heard a whole utterance (measured on LJSpeech: 34% WER cold, 20% warm,
    16% batch). So the first stream of a recogniser only buffers and decodes the utterance
    whole at ``finish()``; later streams decode as the audio arrives.
    """

    def __init__(self, rec: PocketSphinxRecognizer):
        self._rec = rec
        rec._lock.acquire()
        self._open = True
        self.samples = 0
        self.compute_s = 0.0
        self.incremental = rec._warm
        self._buffer: list[np.ndarray] = []
        if self.incremental:
            t0 = time.perf_counter()
            rec._decoder.start_utt()
            self.compute_s += time.perf_counter() - t0

    def feed(self, chunk: np.ndarray) -> None:
        if not self._open:
            raise RuntimeError("this recognition stream is finished")
        t0 = time.perf_counter()
        a = check_audio(chunk)
        self.samples += len(a)
        if not self.incremental:
            self._buffer.append(a)
            return
        self._rec._decoder.process_raw((np.clip(a, -1.0, 1.0) * 32767.0).astype("<i2").tobytes(), False, False)
        self.compute_s += time.perf_counter() - t0

    def finish(self) -> Transcript:
        if not self._open:
            raise RuntimeError("this recognition stream is finished")
        t0 = time.perf_counter()
        d = self._rec._decoder
        try:
            if not self.incremental:
                audio = np.concatenate(self._buffer) if self._buffer else np.zeros(0, np.float32)
                d.start_utt()
                d.process_raw((np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes(), False, True)
            d.end_utt()
            self._rec._warm = True
            self.compute_s += time.perf_counter() - t0
            return self._rec._result(self.samples, self.compute_s)
        finally:
            self._open = False
            self._rec._lock.release()

    def cancel(self) -> None:
        if self._open:
            try:
                if self.incremental:
                    self._rec._decoder.end_utt()
            finally:
                self._open = False
                self._rec._lock.release()
