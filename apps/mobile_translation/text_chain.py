"""Text translation through an ordered chain of engines: the first that answers wins.

``phrasebook`` answers the domain's fixed phrases exactly (:mod:`phrasebook`); ``marian-onnx``
(an OPUS-MT export) and ``apertium`` (rule-based, offline) translate everything else.
:class:`ChainTranslator` says which engine produced each translation.
"""
from __future__ import annotations

from pathlib import Path

from apps.mobile_translation.mt.base import Translation
from sdk.closing import Closing

TEXT_ENGINES = ("phrasebook", "marian-onnx", "apertium")


class ChainTranslator(Closing):
    def __init__(self, translators: list, src: str, tgt: str):
        if not translators:
            raise ValueError(f"at least one engine is needed; expected some of {list(TEXT_ENGINES)}")
        self.translators, self.src, self.tgt = list(translators), src, tgt
        self.name = "+".join(t.name for t in self.translators)

    def translate_with_engine(self, text: str) -> tuple[Translation, str]:
        for i, t in enumerate(self.translators):
            lookup = getattr(t, "lookup", None)
            if lookup is not None and i < len(self.translators) - 1:
                hit = lookup(text)
                if hit is not None:
                    return hit, t.name
                continue
            return t.translate(text), t.name
        raise AssertionError("unreachable: the last engine always answers or raises")

    def translate(self, text: str) -> Translation:
        return self.translate_with_engine(text)[0]

    def close(self) -> None:
        for t in self.translators:
            t.close()


def make_engine(name: str, src: str, tgt: str, *, phrasebook: str | Path | None = None,
                model: str | Path | None = None, beams: int = 1):
    """One engine of the chain by name (models are only read here, never downloaded)."""
    if name == "phrasebook":
        from apps.mobile_translation.phrasebook import PhrasebookTranslator

        if phrasebook is None:
            raise ValueError("engine 'phrasebook' needs a phrasebook TSV file")
        return PhrasebookTranslator.from_tsv(phrasebook, src, tgt)
    if name == "marian-onnx":
        from apps.mobile_translation.mt.marian_onnx import MarianOnnxTranslator

        return MarianOnnxTranslator(model, src=src, tgt=tgt, num_beams=beams)
    if name == "apertium":
        from apps.mobile_translation.mt.apertium_engine import ApertiumTranslator

        return ApertiumTranslator(src, tgt)
    raise ValueError(f"unknown text engine {name!r}; expected one of {list(TEXT_ENGINES)}")
