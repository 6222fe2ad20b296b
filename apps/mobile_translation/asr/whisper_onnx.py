"""Speech recognition with Whisper exported to ONNX by Hugging Face Optimum.

Files (as ``optimum-cli export onnx --model openai/whisper-tiny.en`` writes them):
``encoder_model.onnx`` (``input_features`` [B, 80, 3000] → ``last_hidden_state``),
``decoder_model_merged.onnx`` or ``decoder_model.onnx`` + ``decoder_with_past_model.onnx``
(see :mod:`apps.mobile_translation.seq2seq`), ``tokenizer.json`` (or ``vocab.json`` +
``added_tokens.json``) and optionally ``generation_config.json`` (``suppress_tokens``).
``*_int8.onnx`` files made by ``sdk.compress`` are picked with ``quantized=True``.

Fetched with ``edgewise pull whisper-tiny-en``. Features: ``sdk.preprocess.log_mel_spectrogram``
(Whisper's filterbank, log10, clamp to max-8, (x+4)/4) on audio padded to 30 s.
Decoder prompt: ``<|startoftranscript|><|en|><|transcribe|><|notimestamps|>`` for
multilingual models, ``<|startoftranscript|><|notimestamps|>`` for ``.en`` models.
Utterances longer than 30 s are transcribed in 30 s windows.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from apps.mobile_translation.asr.base import SAMPLE_RATE, Segment, Transcript, check_audio
from apps.mobile_translation.bpe import ByteLevelBPEDecoder
from apps.mobile_translation.onnx_files import decoder_files, resolve_model_dir
from apps.mobile_translation.seq2seq import GenerationConfig, KVDecoder
from sdk.errors import ModelLoadError

WINDOW = 30 * SAMPLE_RATE  # Whisper's fixed 30-second window
N_FRAMES = 3000


def _engine_options(threads: int | None):
    from sdk.runtime import EngineOptions, SessionOptions

    return EngineOptions(providers=["cpu"], warmup=0, session=SessionOptions(intra_op_threads=threads))


class WhisperOnnxRecognizer:
    name = "whisper-onnx"

    def __init__(self, model: str | Path = "whisper-tiny-en", lang: str = "en", num_beams: int = 1,
                 max_new_tokens: int = 224, quantized: bool = False, threads: int | None = None,
                 store=None, use_cache: bool = True):
        from sdk.runtime import Engine

        self.lang = lang
        self.folder = resolve_model_dir(model, store=store)
        files = decoder_files(self.folder, quantized)
        opts = _engine_options(threads)
        self.encoder = Engine(files["encoder"], opts)
        self.n_mels = self._n_mels()
        engines = {k: Engine(v, opts) for k, v in files.items() if k != "encoder"}
        self.decoder = KVDecoder(**engines)
        self.tokenizer = ByteLevelBPEDecoder.from_dir(self.folder)
        self.prompt = self._prompt(lang)
        eos = self.tokenizer.token_id("<|endoftext|>")
        if eos is None:
            raise ModelLoadError(f"the Whisper vocabulary in {self.folder} has no <|endoftext|> token")
        self.eos_id = eos
        self.gen = GenerationConfig(max_new_tokens=max_new_tokens, num_beams=num_beams, use_cache=use_cache,
                                    suppress_ids=self._suppress(), begin_suppress_ids=self._begin_suppress())

    # -- setup ------------------------------------------------------------------------
    def _n_mels(self) -> int:
        spec = {t.name: t for t in self.encoder.inputs}.get("input_features")
        if spec is None:
            raise ModelLoadError(f"the Whisper encoder must take input_features, got {[t.name for t in self.encoder.inputs]}")
        dim = spec.shape[1] if len(spec.shape) == 3 else None
        return dim if isinstance(dim, int) else 80

    def _prompt(self, lang: str) -> list[int]:
        tok = self.tokenizer.token_id
        sot = tok("<|startoftranscript|>")
        if sot is None:
            raise ModelLoadError("the Whisper vocabulary has no <|startoftranscript|> token")
        prompt = [sot]
        if tok("<|en|>") is not None:  # multilingual model: language + task tokens
            lang_id = tok(f"<|{lang}|>")
            if lang_id is None:
                raise ValueError(f"Whisper has no language token <|{lang}|>")
            prompt += [lang_id, tok("<|transcribe|>")]
        nots = tok("<|notimestamps|>")
        if nots is not None:
            prompt.append(nots)
        return prompt

    def _suppress(self) -> list[int]:
        ids = {i for i in self.tokenizer.special_ids if i != self.tokenizer.token_id("<|endoftext|>")}
        gc = self.folder / "generation_config.json"
        if gc.is_file():
            ids |= {int(i) for i in json.loads(gc.read_text()).get("suppress_tokens") or []}
        vocab_size = self._vocab_size()
        return sorted(i for i in ids if i < vocab_size)

    def _begin_suppress(self) -> list[int]:
        ids = [self.tokenizer.token_id("<|endoftext|>")]
        space = self.tokenizer.token_id("Ġ")
        if space is not None:
            ids.append(space)
        gc = self.folder / "generation_config.json"
        if gc.is_file():
            ids += [int(i) for i in json.loads(gc.read_text()).get("begin_suppress_tokens") or []]
        return sorted({i for i in ids if i is not None and i < self._vocab_size()})

    def _vocab_size(self) -> int:
        eng = self.decoder.merged or self.decoder.decoder
        logits = {t.name: t for t in eng.outputs}["logits"].shape
        v = logits[-1] if logits else None
        return v if isinstance(v, int) else 1 << 30

    # -- inference --------------------------------------------------------------------
    def features(self, audio_16k: np.ndarray) -> np.ndarray:
        """[1, n_mels, 3000] log-mel features of one ≤30 s window."""
        from sdk.preprocess import log_mel_spectrogram

        a = np.zeros(WINDOW, np.float32)
        a[: min(len(audio_16k), WINDOW)] = audio_16k[:WINDOW]
        mel = log_mel_spectrogram(a, n_mels=self.n_mels, whisper=True)
        if mel.shape[1] < N_FRAMES:
            mel = np.pad(mel, ((0, 0), (0, N_FRAMES - mel.shape[1])), constant_values=mel.min())
        return mel[None, :, :N_FRAMES].astype(np.float32)

    def decode_window(self, audio_16k: np.ndarray) -> list[int]:
        enc = self.encoder.run_list({"input_features": self.features(audio_16k)})[0]
        return self.decoder.generate(enc, None, self.prompt, self.eos_id, self.gen)

    def transcribe(self, audio_f32_16k: np.ndarray) -> Transcript:
        audio = check_audio(audio_f32_16k)
        t0 = time.perf_counter()
        segments = []
        for start in range(0, max(len(audio), 1), WINDOW):
            piece = audio[start:start + WINDOW]
            text = self.tokenizer.decode(self.decode_window(piece)).strip()
            if text:
                segments.append(Segment(text, start / SAMPLE_RATE, (start + len(piece)) / SAMPLE_RATE))
        return Transcript(" ".join(s.text for s in segments), segments, len(audio) / SAMPLE_RATE,
                          time.perf_counter() - t0)

    def close(self) -> None:
        self.encoder.close()
        self.decoder.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
