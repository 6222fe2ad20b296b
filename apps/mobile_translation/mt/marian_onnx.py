"""Translation with Marian / OPUS-MT exported to ONNX by Hugging Face Optimum.

Files (``optimum-cli export onnx --model Helsinki-NLP/opus-mt-en-es``):
``encoder_model.onnx`` (``input_ids``, ``attention_mask`` → ``last_hidden_state``),
``decoder_model_merged.onnx`` or ``decoder_model.onnx`` + ``decoder_with_past_model.onnx``
(inputs include ``encoder_attention_mask``; see :mod:`apps.mobile_translation.seq2seq`),
``source.spm`` / ``target.spm`` (SentencePiece) and ``vocab.json`` (piece → id, shared),
optionally ``config.json`` (``decoder_start_token_id``, ``eos_token_id``, ``pad_token_id``).
Decoding starts from the pad token (Marian's ``decoder_start_token_id``) and never emits it.

Needs ``pip install 'edgewise[speech]'`` (sentencepiece); fetched with
``edgewise pull opus-mt-en-es``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from apps.mobile_translation.mt.base import Translation
from apps.mobile_translation.onnx_files import decoder_files, resolve_model_dir
from apps.mobile_translation.seq2seq import GenerationConfig, KVDecoder
from sdk.closing import Closing
from sdk.errors import ModelLoadError, require


class MarianTokenizer:
    """SentencePiece pieces ↔ Marian vocabulary ids."""

    def __init__(self, folder: Path, max_source_tokens: int = 512):
        spm = require("sentencepiece", "speech", "Marian / OPUS-MT tokenization")
        for f in ("source.spm", "target.spm", "vocab.json"):
            if not (folder / f).is_file():
                raise ModelLoadError(f"Marian export {folder} lacks {f} (expected source.spm, target.spm, vocab.json)")
        self.source = spm.SentencePieceProcessor(model_file=str(folder / "source.spm"))
        self.target = spm.SentencePieceProcessor(model_file=str(folder / "target.spm"))
        self.vocab: dict[str, int] = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        self.id_to_piece = {i: p for p, i in self.vocab.items()}
        cfg = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
        self.pad_id = int(cfg.get("pad_token_id", self.vocab.get("<pad>", 0)))
        self.eos_id = int(cfg.get("eos_token_id", self.vocab.get("</s>", 0)))
        self.unk_id = int(self.vocab.get("<unk>", 1))
        self.decoder_start_id = int(cfg.get("decoder_start_token_id", self.pad_id))
        self.max_source_tokens = max_source_tokens
        self.special = {self.pad_id, self.eos_id, self.unk_id}

    def encode(self, text: str) -> list[int]:
        pieces = self.source.encode(text, out_type=str)
        ids = [self.vocab.get(p, self.unk_id) for p in pieces][: self.max_source_tokens - 1]
        return ids + [self.eos_id]

    def decode(self, ids) -> str:
        pieces = [self.id_to_piece[i] for i in map(int, ids) if i not in self.special and i in self.id_to_piece]
        return self.target.decode_pieces(pieces)


class MarianOnnxTranslator(Closing):
    name = "marian-onnx"

    def __init__(self, model: str | Path | None = None, src: str = "en", tgt: str = "es", num_beams: int = 1,
                 max_new_tokens: int = 256, quantized: bool = False, threads: int | None = None,
                 store=None, use_cache: bool = True):
        from sdk.runtime import Engine, EngineOptions, SessionOptions

        self.src, self.tgt = src, tgt
        self.folder = resolve_model_dir(model or f"opus-mt-{src}-{tgt}", store=store)
        files = decoder_files(self.folder, quantized)
        opts = EngineOptions(providers=["cpu"], warmup=0, session=SessionOptions(intra_op_threads=threads))
        self.encoder = Engine(files["encoder"], opts)
        self.decoder = KVDecoder(**{k: Engine(v, opts) for k, v in files.items() if k != "encoder"})
        self.tokenizer = MarianTokenizer(self.folder)
        tk = self.tokenizer
        self.gen = GenerationConfig(max_new_tokens=max_new_tokens, num_beams=num_beams, use_cache=use_cache,
                                    suppress_ids=[tk.pad_id] if tk.pad_id != tk.eos_id else [])

    def translate(self, text: str) -> Translation:
        t0 = time.perf_counter()
        if not text.strip():
            return Translation(text, "", 0.0)
        ids = np.array([self.tokenizer.encode(text)], np.int64)
        mask = np.ones_like(ids)
        enc = self.encoder.run_list({"input_ids": ids, "attention_mask": mask})[0]
        out = self.decoder.generate(enc, mask, [self.tokenizer.decoder_start_id], self.tokenizer.eos_id, self.gen)
        return Translation(text, self.tokenizer.decode(out).strip(), time.perf_counter() - t0)

    def close(self) -> None:
        self.encoder.close()
        self.decoder.close()
