"""A phrasebook (translation memory): the fixed phrases of a domain and their approved
translations, answered exactly and instantly before any model runs.

TSV, one pair a line: ``source<TAB>target`` (``#`` starts a comment). Lookups ignore case,
surrounding punctuation and repeated spaces (``"Good morning!"`` finds ``good morning``).
"""
from __future__ import annotations

import re
import time
import unicodedata
from pathlib import Path

from apps.mobile_translation.mt.base import Translation

_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$")


def normalise(text: str) -> str:
    t = unicodedata.normalize("NFC", text).casefold()
    return _EDGE_PUNCT.sub("", " ".join(t.split()))


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """``(source, target)`` pairs of a TSV file; ValueError naming the line that is not a pair."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such phrase file: {path} (TSV: source<TAB>target per line)")
    pairs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ValueError(f"{path}:{n}: expected 'source<TAB>target', got {line!r}")
        pairs.append((parts[0].strip(), parts[1].strip()))
    return pairs


class PhrasebookTranslator:
    """Translator over a phrasebook: :meth:`lookup` returns None on a miss, :meth:`translate` raises."""

    name = "phrasebook"

    def __init__(self, pairs: list[tuple[str, str]], src: str, tgt: str):
        self.src, self.tgt = src, tgt
        self.table: dict[str, str] = {}
        for s, t in pairs:
            self.table.setdefault(normalise(s), t)

    @classmethod
    def from_tsv(cls, path: str | Path, src: str, tgt: str) -> PhrasebookTranslator:
        return cls(read_pairs(path), src, tgt)

    def lookup(self, text: str) -> Translation | None:
        t0 = time.perf_counter()
        hit = self.table.get(normalise(text))
        return None if hit is None else Translation(text, hit, time.perf_counter() - t0)

    def translate(self, text: str) -> Translation:
        hit = self.lookup(text)
        if hit is None:
            from sdk.errors import InferenceError

            raise InferenceError(f"{text!r} is not in the phrasebook ({len(self.table)} phrases) and no other "
                                 "engine is configured")
        return hit

    def close(self) -> None:
        pass


# An evaluation set for the template's sample phrasebook (hotel reception, en-es): four of its
# phrases written differently, and one request it does not hold.
SAMPLE_EVAL = [
    ("good morning!", "Buenos días"), ("Welcome to the hotel.", "Bienvenido al hotel"),
    ("Check-out is at noon.", "La salida es a mediodía"), ("Here is your key card", "Aquí tiene su tarjeta llave"),
    ("Is there parking nearby?", "¿Hay aparcamiento cerca?"),
]


def write_sample_eval(path: str | Path, pairs: list[tuple[str, str]] = SAMPLE_EVAL) -> Path:
    """Write an evaluation TSV (never over an existing file)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; choose another file for the sample evaluation set")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return path
