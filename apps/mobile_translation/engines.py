"""Engine registry: the config names the recogniser, translator and synthesizer.

| stage | name | needs |
|---|---|---|
| asr | ``pocketsphinx`` (default) | ``pip install 'edgewise[speech]'``; US-English model shipped in the wheel, no download |
| asr | ``whisper-onnx`` | ``edgewise pull whisper-tiny-en`` (Optimum ONNX export: encoder + merged decoder + tokenizer.json) |
| mt  | ``apertium`` (default) | ``apt install apertium apertium-eng-spa`` (a subprocess, rule-based, offline) |
| mt  | ``marian-onnx`` | ``edgewise pull opus-mt-en-es`` (Optimum ONNX export + source.spm/target.spm/vocab.json) and sentencepiece |
| tts | ``espeak`` (default) | ``pip install 'edgewise[speech]'`` (espeakng-loader ships libespeak-ng + ~100 voices) |

A missing dependency raises ``DependencyMissingError`` and a model not yet pulled raises
``StoreError`` / ``OfflineError``, each naming the command that fixes it.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ASR_ENGINES = {
    "pocketsphinx": "PocketSphinx with the US-English model its pip package ships (no download; English only)",
    "whisper-onnx": "Whisper (Optimum ONNX export), fetched with `edgewise pull whisper-tiny-en`",
}
MT_ENGINES = {
    "apertium": "Apertium rule-based MT as a subprocess (apt install apertium apertium-eng-spa)",
    "marian-onnx": "Marian / OPUS-MT (Optimum ONNX export), fetched with `edgewise pull opus-mt-en-es`",
}
TTS_ENGINES = {"espeak": "eSpeak NG through the library shipped by espeakng-loader (~100 languages)"}


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    src: str = Field("en", description="spoken language (ISO 639-1)")
    tgt: str = Field("es", description="language to translate into")
    asr: Literal["pocketsphinx", "whisper-onnx"] = "pocketsphinx"
    mt: Literal["apertium", "marian-onnx"] = "apertium"
    tts: Literal["espeak"] = "espeak"
    asr_preset: Literal["fast", "accurate"] = Field("fast", description="pocketsphinx: search settings")
    asr_model: str | None = Field(None, description="whisper-onnx: catalog name or export folder")
    mt_model: str | None = Field(None, description="marian-onnx: catalog name or export folder")
    num_beams: int = Field(1, ge=1, le=16, description="beam width of the neural decoders (1 = greedy)")
    quantized: bool = Field(False, description="use the *_int8.onnx files made by `edgewise translate quantize`")
    threads: int | None = Field(None, ge=1, description="onnxruntime intra-op threads")
    tts_rate_wpm: int = Field(165, ge=80, le=450)


def make_recognizer(cfg: EngineConfig):
    if cfg.asr == "pocketsphinx":
        from apps.mobile_translation.asr.pocketsphinx_engine import PocketSphinxRecognizer

        return PocketSphinxRecognizer(cfg.src, preset=cfg.asr_preset)
    from apps.mobile_translation.asr.whisper_onnx import WhisperOnnxRecognizer

    return WhisperOnnxRecognizer(cfg.asr_model or "whisper-tiny-en", lang=cfg.src, num_beams=cfg.num_beams,
                                 quantized=cfg.quantized, threads=cfg.threads)


def make_translator(cfg: EngineConfig):
    if cfg.mt == "apertium":
        from apps.mobile_translation.mt.apertium_engine import ApertiumTranslator

        return ApertiumTranslator(cfg.src, cfg.tgt)
    from apps.mobile_translation.mt.marian_onnx import MarianOnnxTranslator

    return MarianOnnxTranslator(cfg.mt_model, src=cfg.src, tgt=cfg.tgt, num_beams=cfg.num_beams,
                                quantized=cfg.quantized, threads=cfg.threads)


def make_synthesizer(cfg: EngineConfig):
    from apps.mobile_translation.tts.espeak_engine import EspeakSynthesizer

    return EspeakSynthesizer(cfg.tgt, rate_wpm=cfg.tts_rate_wpm)


class Engines:
    """The three engines of one configuration; ``close()`` closes them all."""

    def __init__(self, cfg: EngineConfig):
        self.cfg = cfg
        self.asr = make_recognizer(cfg)
        try:
            self.mt = make_translator(cfg)
            self.tts = make_synthesizer(cfg)
        except BaseException:
            self.asr.close()
            raise

    def close(self) -> None:
        for e in (self.asr, getattr(self, "mt", None), getattr(self, "tts", None)):
            if e is not None:
                e.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
