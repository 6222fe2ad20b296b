"""Decoding of byte-level BPE token ids (GPT-2 / Whisper vocabularies) to text.

Uses the ``tokenizers`` package when it is installed; otherwise reads the vocabulary from
``tokenizer.json`` (``model.vocab`` + ``added_tokens``) or ``vocab.json`` +
``added_tokens.json`` and maps each token's characters back to bytes. Only decoding is
needed: Whisper's prompt is made of special tokens looked up by name.
"""
from __future__ import annotations

import json
from pathlib import Path

from sdk.errors import ModelLoadError


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


_BYTE_OF = {c: b for b, c in _bytes_to_unicode().items()}


class ByteLevelBPEDecoder:
    """``decode(ids) -> str`` and ``token_id(name)`` for a byte-level BPE vocabulary."""

    def __init__(self, vocab: dict[str, int], added: dict[str, int], special: set[str] | None = None):
        self.vocab = dict(vocab)
        self.vocab.update(added)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.special = set(special if special is not None else added)
        self.special_ids = {self.vocab[t] for t in self.special if t in self.vocab}

    @classmethod
    def from_dir(cls, folder: str | Path) -> "ByteLevelBPEDecoder":
        folder = Path(folder)
        tj = folder / "tokenizer.json"
        if tj.is_file():
            data = json.loads(tj.read_text(encoding="utf-8"))
            vocab = data.get("model", {}).get("vocab")
            if not isinstance(vocab, dict):
                raise ModelLoadError(f"{tj} has no model.vocab mapping (expected a byte-level BPE tokenizer)")
            added = {t["content"]: int(t["id"]) for t in data.get("added_tokens", [])}
            special = {t["content"] for t in data.get("added_tokens", []) if t.get("special", True)}
            return cls(vocab, added, special)
        vj = folder / "vocab.json"
        if not vj.is_file():
            raise ModelLoadError(f"no tokenizer.json or vocab.json in {folder}")
        vocab = json.loads(vj.read_text(encoding="utf-8"))
        aj = folder / "added_tokens.json"
        added = json.loads(aj.read_text(encoding="utf-8")) if aj.is_file() else {}
        return cls(vocab, {k: int(v) for k, v in added.items()})

    def token_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def decode(self, ids, skip_special: bool = True) -> str:
        out = bytearray()
        for i in ids:
            i = int(i)
            if skip_special and i in self.special_ids:
                continue
            tok = self.id_to_token.get(i)
            if tok is None:
                continue
            if i in self.special_ids:
                out.extend(tok.encode("utf-8"))
                continue
            for ch in tok:
                b = _BYTE_OF.get(ch)
                if b is None:
                    out.extend(ch.encode("utf-8"))
                else:
                    out.append(b)
        return out.decode("utf-8", errors="replace")
