"""The translator interface: source text in, :class:`Translation` out."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Translation:
    source: str
    text: str
    compute_s: float = 0.0


@runtime_checkable
class Translator(Protocol):
    name: str
    src: str
    tgt: str

    def translate(self, text: str) -> Translation: ...

    def close(self) -> None: ...
