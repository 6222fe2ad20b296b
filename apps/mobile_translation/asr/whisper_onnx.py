"""Speech recognition with Whisper exported to ONNX by Hugging Face Optimum.

Files (the onnx-community/whisper-* layout, or flat as ``optimum-cli`` writes them):
``encoder_model.onnx`` (``input_features`` [B, 80, 3000] → ``last_hidden_state``),
``decoder_model_merged.onnx`` (KV cache selected by ``use_cache_branch``) or
``decoder_model.onnx`` + ``decoder_with_past_model.onnx`` (see
:mod:`apps.mobile_translation.seq2seq`), ``tokenizer.json`` (or ``vocab.json`` +
``added_tokens.json``) and ``generation_config.json``. The ``*_quantized.onnx`` /
``*_int8.onnx`` files are used when they are the only ones (as shipped), or with ``quantized=True``.

Provisioned with ``edgewise pull whisper-tiny-en`` (or ``--from FOLDER`` offline).
Features: ``sdk.preprocess.log_mel_spectrogram`` (Whisper's filterbank) of each 30 s window.
Long audio is read in 30 s windows as openai-whisper does: each window is decoded with
segment timestamps, the next window starts at the last complete segment, and the
previous text is the prompt of the next window (dropped after a high-temperature fallback).
The decoding rules and safeguards are in :mod:`apps.mobile_translation.asr.whisper_decode`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from apps.mobile_translation.asr.base import SAMPLE_RATE, Segment, Transcript, check_audio
from apps.mobile_translation.asr.whisper_decode import (
    DecodeCancelled,
    DecodeOptions,
    DecodeResult,
    WhisperTokens,
    WindowDecoder,
)
from apps.mobile_translation.bpe import ByteLevelBPEDecoder
from apps.mobile_translation.onnx_files import decoder_files, resolve_model_dir
from apps.mobile_translation.seq2seq import GenerationConfig, KVDecoder
from sdk.errors import ModelLoadError

WINDOW = 30 * SAMPLE_RATE  # Whisper's fixed 30-second window
N_FRAMES = 3000
TS_STEP = 0.02             # seconds per timestamp token
MIN_WINDOW = SAMPLE_RATE // 10   # a remainder shorter than this is not decoded


def _engine_options(threads: int | None):
    from sdk.runtime import EngineOptions, SessionOptions

    # no spinning: idle onnxruntime threads would burn the cores the live loop's listener needs
    return EngineOptions(providers=["cpu"], warmup=0,
                         session=SessionOptions(intra_op_threads=threads, allow_spinning=False))


def _decoder_engine(path: Path, opts, int8_matmul: bool):
    """The decoder's Engine; with ``int8_matmul`` its dequantize-per-step logits run as INT8
    (:mod:`apps.mobile_translation.asr.int8_matmul`: 4-5x faster steps on the shipped INT8 files)."""
    from sdk.runtime import Engine

    if int8_matmul:
        from apps.mobile_translation.asr.int8_matmul import load_fused

        model, n = load_fused(path)
        if n:
            return Engine(model, opts, label=str(path))
    return Engine(path, opts)


class WhisperOnnxRecognizer:
    name = "whisper-onnx"
    long_form = True   # segments long windows itself (file mode gives it VAD-merged groups)

    def __init__(self, model: str | Path = "whisper-tiny-en", lang: str = "en", task: str = "transcribe",
                 num_beams: int = 5, max_new_tokens: int = 224, quantized: bool | None = None,
                 threads: int | None = None, store=None, use_cache: bool = True,
                 options: DecodeOptions | None = None, int8_matmul: bool = True):
        from sdk.runtime import Engine

        if task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {task!r}")
        self.lang, self.task = lang, task
        self.folder = resolve_model_dir(model, store=store)
        self.model_name = self.folder.name if Path(str(model)).exists() else str(model)
        files = decoder_files(self.folder, quantized)
        self.files = files
        opts = _engine_options(threads)
        self.encoder = Engine(files["encoder"], opts)
        engines = {}
        try:
            self.n_mels = self._n_mels()
            engines = {k: _decoder_engine(v, opts, int8_matmul) for k, v in files.items() if k != "encoder"}
            self.decoder = KVDecoder(**engines)
        except BaseException:
            self.encoder.close()
            for e in engines.values():
                e.close()
            raise
        self.tokenizer = ByteLevelBPEDecoder.from_dir(self.folder)
        self.generation = self._generation_config()
        self.multilingual = bool(self.generation.get("is_multilingual", self.tokenizer.token_id("<|en|>") is not None))
        self.tokens = self._tokens()
        self.sot_sequence = self._sot_sequence(lang, task)
        nots = self.tokens.no_timestamps
        self.prompt = self.sot_sequence + ([nots] if nots is not None else [])  # no-timestamps prompt
        self.eos_id = self.tokens.eot
        self.options = options or DecodeOptions(beam_size=num_beams, max_new_tokens=max_new_tokens)
        # plain search settings (tests, the streaming partials): GenerationConfig over KVDecoder
        self.gen = GenerationConfig(max_new_tokens=max_new_tokens, num_beams=num_beams, use_cache=use_cache,
                                    suppress_ids=list(self.tokens.suppress),
                                    begin_suppress_ids=list(self.tokens.begin_suppress))
        self.window = WindowDecoder(self.decoder, self.tokens, self._text)
        self.last_results: list[DecodeResult] = []

    # -- setup ------------------------------------------------------------------------
    def _n_mels(self) -> int:
        spec = {t.name: t for t in self.encoder.inputs}.get("input_features")
        if spec is None:
            raise ModelLoadError("the Whisper encoder must take input_features, "
                                 f"got {[t.name for t in self.encoder.inputs]}")
        dim = spec.shape[1] if len(spec.shape) == 3 else None
        return dim if isinstance(dim, int) else 80

    def _generation_config(self) -> dict:
        gc = self.folder / "generation_config.json"
        if not gc.is_file():
            return {}
        try:
            data = json.loads(gc.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{gc} is not readable JSON: {exc}") from exc
        return data if isinstance(data, dict) else {}

    def _tokens(self) -> WhisperTokens:
        tok = self.tokenizer.token_id
        eot, sot = tok("<|endoftext|>"), tok("<|startoftranscript|>")
        if eot is None or sot is None:
            raise ModelLoadError(f"the Whisper vocabulary in {self.folder} lacks <|endoftext|> "
                                 "or <|startoftranscript|>")
        vocab = self._vocab_size()
        tb = tok("<|0.00|>")
        tb = tb if tb is not None and tb < vocab else None
        no_speech = tok("<|nospeech|>") if tok("<|nospeech|>") is not None else tok("<|nocaptions|>")
        special = {i for i in self.tokenizer.special_ids if i != eot and (tb is None or i < tb)}
        special |= {int(i) for i in self.generation.get("suppress_tokens") or []}
        begin = {eot} | {int(i) for i in self.generation.get("begin_suppress_tokens") or []}
        space = tok("Ġ")
        if space is not None:
            begin.add(space)
        return WhisperTokens(eot=eot, sot=sot, sot_prev=tok("<|startofprev|>"), no_speech=no_speech,
                             no_timestamps=tok("<|notimestamps|>"), timestamp_begin=tb, vocab_size=vocab,
                             suppress=tuple(sorted(i for i in special if i < vocab)),
                             begin_suppress=tuple(sorted(i for i in begin if i < vocab)))

    def _sot_sequence(self, lang: str, task: str) -> list[int]:
        tok = self.tokenizer.token_id
        seq = [self.tokens.sot]
        if not self.multilingual:
            if lang != "en" or task != "transcribe":
                raise ValueError(f"{self.model_name} is an English-only Whisper model: it transcribes English "
                                 f"(got language {lang!r}, task {task!r}); use a multilingual one such as whisper-base")
            return seq
        lang_id = tok(f"<|{lang}|>")
        if lang_id is None:
            raise ValueError(f"Whisper has no language token <|{lang}|>")
        task_id = tok(f"<|{task}|>")
        if task_id is None:
            raise ModelLoadError(f"the Whisper vocabulary has no <|{task}|> token")
        return seq + [lang_id, task_id]

    def _vocab_size(self) -> int:
        eng = self.decoder.merged or self.decoder.decoder
        logits = {t.name: t for t in eng.outputs}["logits"].shape
        v = logits[-1] if logits else None
        return v if isinstance(v, int) else len(self.tokenizer.vocab)

    def _text(self, tokens) -> str:
        tb = self.tokens.timestamp_begin
        return self.tokenizer.decode([t for t in tokens if tb is None or t < tb])

    # -- inference --------------------------------------------------------------------
    def features(self, audio_16k: np.ndarray) -> np.ndarray:
        """[1, n_mels, 3000] log-mel features of one ≤30 s window."""
        from sdk.preprocess import whisper_input_features

        return whisper_input_features(np.asarray(audio_16k, np.float32), n_mels=self.n_mels, n_frames=N_FRAMES)

    def encode(self, audio_16k: np.ndarray) -> np.ndarray:
        return self.encoder.run_list({"input_features": self.features(audio_16k)})[0]

    def decode_window(self, audio_16k: np.ndarray) -> list[int]:
        """Text tokens of one ≤30 s window with the plain search settings (no timestamps)."""
        return self.decoder.generate(self.encode(audio_16k), None, self.prompt, self.eos_id, self.gen)

    def _prompt(self, previous: list[int], timestamps: bool) -> tuple[list[int], int]:
        head: list[int] = []
        if previous and self.tokens.sot_prev is not None and self.options.max_prompt_tokens > 0:
            head = [self.tokens.sot_prev] + previous[-self.options.max_prompt_tokens:]
        seq = head + self.sot_sequence
        if not timestamps and self.tokens.no_timestamps is not None:
            seq.append(self.tokens.no_timestamps)
        return seq, len(head)

    def _split(self, tokens: list[int], seg_len: int) -> tuple[list[tuple[float, float, list[int]]], int]:
        """Segments (start s, end s, tokens) of a window, and how many samples to advance."""
        tb, dur = self.tokens.timestamp_begin, seg_len / SAMPLE_RATE
        if tb is None or not any(t >= tb for t in tokens):
            return [(0.0, dur, tokens)], seg_len
        is_ts = [t >= tb for t in tokens]
        single_ending = len(tokens) >= 2 and is_ts[-1] and not is_ts[-2]
        cuts = [i for i in range(1, len(tokens)) if is_ts[i] and is_ts[i - 1]]
        if not cuts:
            stamps = [t for t in tokens if t >= tb]
            end = (stamps[-1] - tb) * TS_STEP if stamps[-1] > tb else dur
            return [(0.0, min(end, dur), tokens)], seg_len
        if single_ending:
            cuts.append(len(tokens))
        out, last = [], 0
        for cut in cuts:
            piece = tokens[last:cut]
            start, end = (piece[0] - tb) * TS_STEP, (piece[-1] - tb) * TS_STEP
            out.append((min(start, dur), min(max(end, start), dur), piece))
            last = cut
        if single_ending:
            return out, seg_len
        advance = int(round((tokens[last - 1] - tb) * TS_STEP * SAMPLE_RATE))
        return out, advance if advance > 0 else seg_len

    def transcribe(self, audio_f32_16k: np.ndarray, timestamps: bool | None = None,
                   options: DecodeOptions | None = None, results: list | None = None, stop=None) -> Transcript:
        """The whole signal in 30 s windows; one :class:`Segment` per timestamped segment.

        ``stop``: a callable checked after the encoder and before each decoder step; when it
        returns True the decode ends with ``DecodeCancelled``.

        The :class:`DecodeResult` of each window goes to ``results`` when given (safe when
        several threads decode at once), and to ``last_results``.
        """
        audio = check_audio(audio_f32_16k)
        opts = options or self.options
        ts = (opts.timestamps if timestamps is None else timestamps) and self.tokens.has_timestamps
        t0 = time.perf_counter()
        segments: list[Segment] = []
        previous: list[int] = []
        window_results: list[DecodeResult] = [] if results is None else results
        self.last_results = window_results
        seek = 0
        rng = np.random.default_rng(opts.seed)
        while len(audio) - seek >= MIN_WINDOW or (seek == 0 and len(audio)):
            piece = audio[seek:seek + WINDOW]
            enc = self.encode(piece)
            if stop is not None and stop():
                raise DecodeCancelled
            prompt, sot_index = self._prompt(previous if opts.condition_on_previous_text else [], ts)
            res = self.window.decode_with_fallback(enc, prompt, sot_index, opts, rng, stop)
            window_results.append(res)
            if res.is_silence(opts):
                seek += len(piece)
                continue
            parts, advance = self._split(res.tokens, len(piece)) if ts else ([(0.0, len(piece) / SAMPLE_RATE,
                                                                              res.tokens)], len(piece))
            for start, end, toks in parts:
                text = self._text(toks).strip()
                if text:
                    segments.append(Segment(text, round(seek / SAMPLE_RATE + start, 3),
                                            round(seek / SAMPLE_RATE + end, 3)))
            seek += advance
            if res.temperature > opts.prompt_reset_on_temperature:
                previous = []
            else:
                previous += res.tokens
        text = " ".join(s.text for s in segments)
        return Transcript(text, segments, len(audio) / SAMPLE_RATE, time.perf_counter() - t0)

    def stream(self, on_partial=None, **kw):
        """An incremental session over one utterance (LocalAgreement-2 partials)."""
        from apps.mobile_translation.asr.whisper_stream import WhisperStream

        return WhisperStream(self, on_partial=on_partial, **kw)

    def warm_up(self) -> None:
        """One decode of a second of silence, so the first utterance is not slower than the rest."""
        self.transcribe(np.zeros(SAMPLE_RATE, np.float32))

    def close(self) -> None:
        self.encoder.close()
        self.decoder.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
