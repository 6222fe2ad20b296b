"""Engine registry: the config names the recogniser, translator and synthesizer.

| stage | name | needs |
|---|---|---|
| asr | ``auto`` (default) | Whisper when its model is in the store, else PocketSphinx |
| asr | ``whisper-onnx`` | ``edgewise pull whisper-tiny-en`` (English) / ``whisper-base`` (99 languages, |
|     |                  | speech translation into English); ``--from FOLDER`` offline |
| asr | ``pocketsphinx`` | ``pip install 'edgewise[speech]'``; US-English model shipped in the wheel, no download |
| mt  | ``auto`` (default) | none when the target is the spoken language or English spoken through |
|     |                    | Whisper's translate task, else ``apertium`` |
| mt  | ``apertium`` | ``apt install apertium apertium-eng-spa`` (a subprocess, rule-based, offline) |
| mt  | ``marian-onnx`` | ``edgewise pull opus-mt-en-es`` (Optimum ONNX export + source.spm/target.spm/ |
|     |                 | vocab.json) and sentencepiece |
| mt  | ``none`` | no translation stage (transcription, or Whisper's own translation into English) |
| tts | ``espeak`` (default) | ``pip install 'edgewise[speech]'`` (espeakng-loader ships libespeak-ng + ~100 voices) |

A missing dependency raises ``DependencyMissingError`` and a model not yet pulled raises
``StoreError`` / ``OfflineError``, each naming the command that fixes it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sdk.closing import Closing

ASR_ENGINES = {
    "auto": "Whisper when its model is in the store (edgewise pull whisper-tiny-en / whisper-base), else PocketSphinx",
    "pocketsphinx": "PocketSphinx with the US-English model its pip package ships (no download; English only)",
    "whisper-onnx": "Whisper (Optimum ONNX export), provisioned with `edgewise pull whisper-tiny-en`",
}
MT_ENGINES = {
    "auto": "none when no translation is needed or Whisper translates into English itself, else apertium",
    "apertium": "Apertium rule-based MT as a subprocess (apt install apertium apertium-eng-spa)",
    "marian-onnx": "Marian / OPUS-MT (Optimum ONNX export), fetched with `edgewise pull opus-mt-en-es`",
    "none": "no translation stage",
}
TTS_ENGINES = {"espeak": "eSpeak NG through the library shipped by espeakng-loader (~100 languages)"}
WHISPER_ENGLISH, WHISPER_MULTI = "whisper-tiny-en", "whisper-base"


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    src: str = Field("en", description="spoken language (ISO 639-1)")
    tgt: str = Field("es", description="language to translate into")
    asr: Literal["auto", "pocketsphinx", "whisper-onnx"] = "auto"
    mt: Literal["auto", "apertium", "marian-onnx", "none"] = "auto"
    tts: Literal["espeak"] = "espeak"
    asr_preset: Literal["fast", "accurate"] = Field("fast", description="pocketsphinx: search settings")
    asr_model: str | None = Field(None, description="whisper-onnx: catalog name or export folder")
    mt_model: str | None = Field(None, description="marian-onnx: catalog name or export folder")
    num_beams: int = Field(1, ge=1, le=16, description="beam width of the neural decoders (1 = greedy)")
    quantized: bool | Literal["int4"] | None = Field(None, description="True: the *_int8.onnx files made by "
                                                     "`edgewise translate quantize`; \"int4\": its *_int4.onnx files "
                                                     "(--bits 4); None: fp32 when present, else the INT8 files shipped")
    threads: int | None = Field(None, ge=1, description="onnxruntime intra-op threads")
    tts_rate_wpm: int = Field(165, ge=80, le=450)


@dataclass
class Plan:
    """What will run: engine names, the Whisper model and task, and notes for the user."""

    asr: str
    mt: str
    tts: str
    asr_model: str | None = None
    asr_path: str | None = None     # the verified store folder, when auto found it there
    task: str = "transcribe"
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, str]:
        d = {"asr": self.asr, "mt": self.mt, "tts": self.tts}
        if self.asr == "whisper-onnx":
            d["asr_model"], d["asr_task"] = str(self.asr_model), self.task
        return d


def _in_store(name: str, store) -> str | None:
    """The verified path of ``name`` in the store, or None when it is not there."""
    from sdk.errors import StoreError

    try:
        return str(store.path(name))
    except StoreError:  # missing, offline, unknown or unverifiable; IntegrityError is not caught
        return None


def plan_engines(cfg: EngineConfig, store=None) -> Plan:
    """Resolve ``auto`` choices against what is installed and in the model store."""
    from sdk.bundle import ModelStore

    asr, model, task, notes, path = cfg.asr, cfg.asr_model, "transcribe", [], None
    translate_speech = cfg.src != "en" and cfg.tgt == "en"
    if asr == "auto":
        store = store or ModelStore()
        wanted = [WHISPER_ENGLISH, WHISPER_MULTI] if cfg.src == "en" and not model else [WHISPER_MULTI]
        if model:
            asr = "whisper-onnx"
        else:
            found = ((n, _in_store(n, store)) for n in wanted)
            have = next(((n, p) for n, p in found if p), None)
            if have:
                asr, (model, path) = "whisper-onnx", have
            elif cfg.src != "en":
                raise ValueError(f"speech in {cfg.src!r} needs the multilingual Whisper model: run "
                                 f"`edgewise pull {WHISPER_MULTI}` (or `--from FOLDER` offline); PocketSphinx "
                                 "here recognises English only")
            else:
                asr = "pocketsphinx"
                notes.append(f"ran PocketSphinx because no Whisper model is in the store; for far better accuracy run "
                             f"`edgewise pull {WHISPER_ENGLISH}` (offline: `edgewise pull {WHISPER_ENGLISH} --from "
                             "FOLDER`)")
    if asr == "whisper-onnx" and not model:
        model = WHISPER_ENGLISH if cfg.src == "en" else WHISPER_MULTI
    mt = cfg.mt
    if mt == "auto":
        if cfg.tgt == cfg.src:
            mt = "none"
        elif translate_speech and asr == "whisper-onnx":
            mt = "none"
        else:
            mt = "apertium"
    if mt == "none" and cfg.tgt != cfg.src:
        if not translate_speech or asr != "whisper-onnx":
            raise ValueError(f"--mt none cannot turn {cfg.src!r} speech into {cfg.tgt!r}: only Whisper translates "
                             "into English by itself; pick --mt apertium or marian-onnx")
        task = "translate"
    if asr == "pocketsphinx" and cfg.src != "en":
        raise ValueError(f"PocketSphinx recognises English only, got --from {cfg.src!r}; use --asr whisper-onnx "
                         f"with {WHISPER_MULTI}")
    return Plan(asr=asr, mt=mt, tts=cfg.tts, asr_model=model, asr_path=path, task=task, notes=notes)


def make_recognizer(cfg: EngineConfig, plan: Plan | None = None):
    plan = plan or plan_engines(cfg)
    if plan.asr == "pocketsphinx":
        from apps.mobile_translation.asr.pocketsphinx_engine import PocketSphinxRecognizer

        return PocketSphinxRecognizer(cfg.src, preset=cfg.asr_preset)
    from apps.mobile_translation.asr.whisper_onnx import WhisperOnnxRecognizer

    return WhisperOnnxRecognizer(plan.asr_path or plan.asr_model, lang=cfg.src, task=plan.task, num_beams=cfg.num_beams,
                                 quantized=cfg.quantized, threads=cfg.threads)


def make_translator(cfg: EngineConfig, plan: Plan | None = None):
    mt = plan.mt if plan else (cfg.mt if cfg.mt != "auto" else "apertium")
    if mt == "none":
        return None
    if mt == "apertium":
        from apps.mobile_translation.mt.apertium_engine import ApertiumTranslator

        return ApertiumTranslator(cfg.src, cfg.tgt)
    from apps.mobile_translation.mt.marian_onnx import MarianOnnxTranslator

    return MarianOnnxTranslator(cfg.mt_model, src=cfg.src, tgt=cfg.tgt, num_beams=cfg.num_beams,
                                quantized=cfg.quantized, threads=cfg.threads)


def make_synthesizer(cfg: EngineConfig):
    from apps.mobile_translation.tts.espeak_engine import EspeakSynthesizer

    return EspeakSynthesizer(cfg.tgt, rate_wpm=cfg.tts_rate_wpm)


class SpeechStack(Closing):
    """The recogniser, translator and synthesizer of one configuration (``asr``, ``mt``, ``tts``;
    ``mt`` is None when there is no MT stage); ``close()`` closes them. Not to be confused with
    ``sdk.runtime.Engine``, one onnxruntime session (a Whisper recogniser holds several)."""

    def __init__(self, cfg: EngineConfig, store=None):
        self.cfg = cfg
        self.plan = plan_engines(cfg, store)
        self.asr = make_recognizer(cfg, self.plan)
        try:
            self.mt = make_translator(cfg, self.plan)
            self.tts = make_synthesizer(cfg)
        except BaseException:
            self.asr.close()
            raise

    def translate(self, text: str):
        """The target-language text of one transcript (itself when there is no MT stage)."""
        from apps.mobile_translation.mt.base import Translation

        if self.mt is None:
            return Translation(text, text, 0.0)
        return self.mt.translate(text)

    def close(self) -> None:
        for e in (self.asr, getattr(self, "mt", None), getattr(self, "tts", None)):
            if e is not None:
                e.close()


Engines = SpeechStack   # the old name, kept for existing callers; new code says SpeechStack
