"""Append-only, hash-chained audit log (JSON lines) and its verifier.

Each line is a JSON object with ``prev_hash`` (the previous line's ``hash``, 64 zeros for
the first) and ``hash`` = SHA-256 of the canonical JSON (sorted keys, no spaces) of the
object without ``hash``. Editing, inserting, deleting or reordering a line breaks the chain
at that line. Lines are appended and flushed+fsynced one by one; nothing is ever rewritten.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
FIELDS = ("time", "model", "model_version", "sdk_version", "model_sha256", "input_sha256",
          "study_id", "decision", "status", "reason")


def _digest(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


class AuditLog:
    """Appends records to ``path``, continuing the chain of an existing file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._prev = GENESIS
        if self.path.is_file() and self.path.stat().st_size:
            res = verify(self.path)
            if not res.ok:
                raise ValueError(f"refusing to append to a broken audit chain: {res.message}")
            self._prev = res.last_hash

    def append(self, **fields: Any) -> dict[str, Any]:
        missing = [f for f in FIELDS if f not in fields]
        if missing:
            raise ValueError(f"audit record lacks fields {missing}")
        rec = {**fields, "prev_hash": self._prev}
        rec["hash"] = _digest(rec)
        line = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._prev = rec["hash"]
        return rec


@dataclass
class VerifyResult:
    ok: bool
    lines: int
    message: str
    bad_line: int | None = None
    last_hash: str = GENESIS


def verify(path: str | Path) -> VerifyResult:
    """Check every line's hash and link; report the first broken line (1-based)."""
    prev = GENESIS
    n = 0
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                return VerifyResult(False, n, f"line {n}: not valid JSON ({exc.msg})", n, prev)
            if not isinstance(rec, dict) or "hash" not in rec or "prev_hash" not in rec:
                return VerifyResult(False, n, f"line {n}: missing hash/prev_hash", n, prev)
            if rec["prev_hash"] != prev:
                return VerifyResult(False, n, f"line {n}: prev_hash does not match line {n - 1}'s hash "
                                              "(a line was removed, inserted or reordered)", n, prev)
            if _digest(rec) != rec["hash"]:
                return VerifyResult(False, n, f"line {n}: content does not match its hash (edited)", n, prev)
            prev = rec["hash"]
    return VerifyResult(True, n, f"chain intact: {n} record(s)", None, prev)
