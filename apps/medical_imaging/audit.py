"""Append-only, hash-chained, keyed audit log (JSON lines) and its verifier.

Each line is a JSON object with ``prev_hash`` (the previous line's ``hash``, 64 zeros for
the first), ``hash`` = SHA-256 of the canonical JSON (sorted keys, no spaces) of the
object without ``hash`` and ``mac``, and ``mac`` = HMAC-SHA256 of that hash under the
per-device key (:mod:`apps.medical_imaging.audit_key`). After every append a keyed
checkpoint (record count + head hash) is written next to the log. So:

- editing, inserting, deleting or reordering a line breaks the chain at that line;
- rewriting the whole chain with fresh hashes fails the first rewritten line's MAC;
- deleting the last lines leaves fewer records than the checkpoint counts;
- garbage bytes are a line that is not UTF-8 JSON.

Appends from several processes (two runs into one folder, ``--watch``) are serialised by
an exclusive ``flock`` on ``<log>.lock``; each writer first reads and checks the lines the
others appended, so the chain stays one chain. Lines are flushed and fsynced one by one;
nothing is ever rewritten.
"""
from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from apps.medical_imaging.audit_key import load_key, read_checkpoint, record_mac, write_checkpoint

GENESIS = "0" * 64
FIELDS = ("time", "model", "model_version", "sdk_version", "model_sha256", "input_sha256",
          "study_id", "decision", "status", "reason")


def _digest(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k not in ("hash", "mac")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


@dataclass
class VerifyResult:
    ok: bool
    lines: int
    message: str
    bad_line: int | None = None
    last_hash: str = GENESIS
    offset: int = 0          # bytes of the log covered by the checked lines


MAX_LINE = 1 << 20   # an audit record is a few hundred bytes; a longer line is damage


def _check_lines(fh: BinaryIO, start_line: int, prev: str, key: bytes | None,
                 hash_at: int | None = None) -> tuple[VerifyResult, str | None]:
    """Check the lines read from ``fh`` (the first is line ``start_line``) continue ``prev``.

    Reads one bounded line at a time (memory stays flat on any file). Returns the result
    (``offset``: bytes of good lines read) and the hash of line ``hash_at`` if it was reached.
    """
    n, pos, at = start_line - 1, 0, (GENESIS if hash_at == 0 else None)

    def bad(line: int, why: str) -> tuple[VerifyResult, str | None]:
        return VerifyResult(False, line, f"line {line}: {why}", line, prev, pos), at

    while True:
        raw = fh.readline(MAX_LINE + 1)
        if not raw:
            break
        if not raw.endswith(b"\n"):
            if len(raw) > MAX_LINE:
                return bad(n + 1, f"longer than {MAX_LINE} bytes (garbage)")
            return bad(n + 1, "incomplete (no end of line: cut while written, or bytes appended)")
        n += 1
        try:
            rec = json.loads(raw[:-1].decode("utf-8"))
        except UnicodeDecodeError:
            return bad(n, "not UTF-8 text (garbage bytes)")
        except json.JSONDecodeError as exc:
            return bad(n, f"not valid JSON ({exc.msg})")
        except RecursionError:
            return bad(n, "JSON nested too deep (garbage)")
        if not isinstance(rec, dict) or not isinstance(rec.get("hash"), str) or "prev_hash" not in rec:
            return bad(n, "missing hash/prev_hash")
        if rec["prev_hash"] != prev:
            return bad(n, f"prev_hash does not match line {n - 1}'s hash (a line was removed, inserted or reordered)")
        if _digest(rec) != rec["hash"]:
            return bad(n, "content does not match its hash (edited)")
        if key is not None:
            mac = rec.get("mac")
            if not isinstance(mac, str) or not hmac.compare_digest(mac, record_mac(key, rec["hash"])):
                what = "has no MAC" if mac is None else "MAC does not verify with the device key"
                return bad(n, f"{what} (the chain was rewritten from here, or written by another device)")
        prev = rec["hash"]
        pos += len(raw)
        if n == hash_at:
            at = prev
    return VerifyResult(True, n, f"chain intact: {n} record(s)", None, prev, pos), at


def verify(path: str | Path, key: bytes | None | str = "device", checkpoint: bool = True) -> VerifyResult:
    """Check every line's hash, link and MAC, then the keyed checkpoint; report the first
    broken line (1-based).

    ``key``: ``"device"`` (default) loads this device's audit key (never creates one);
    ``None`` checks the hash chain only (no MACs, no checkpoint: cutting the tail or
    rewriting the whole chain is then *not* detected).
    """
    path = Path(path)
    if key == "device":
        try:
            key = load_key(create=False)
        except (FileNotFoundError, ValueError) as exc:
            return VerifyResult(False, 0, f"cannot check MACs and checkpoint: {exc}", None)
    key = key if isinstance(key, bytes) else None
    cp = None
    if key is not None and checkpoint:
        try:
            cp = read_checkpoint(path, key)
        except (FileNotFoundError, ValueError) as exc:
            cp = exc
    with open(path, "rb") as fh:
        res, head_at = _check_lines(fh, 1, GENESIS, key, cp[0] if isinstance(cp, tuple) else None)
    if not res.ok or key is None or not checkpoint:
        if res.ok and key is None:
            res.message += " (hash chain only: truncation and rewriting not checked without the key)"
        return res
    if isinstance(cp, Exception):
        if res.lines == 0:
            return res   # an empty log needs no checkpoint
        return VerifyResult(False, res.lines, str(cp), None, res.last_hash, res.offset)
    count, head = cp
    if res.lines < count:
        return VerifyResult(False, res.lines, f"line {res.lines + 1}: missing: the log ends after {res.lines} "
                                              f"record(s) but its checkpoint counts {count} (tail deleted)",
                            res.lines + 1, res.last_hash, res.offset)
    if head_at != head:
        return VerifyResult(False, res.lines, f"line {count}: does not match the checkpointed head hash "
                                              "(rewritten)", max(count, 1), res.last_hash, res.offset)
    extra = res.lines - count
    tail = f"; {extra} record(s) after the checkpoint (MAC-verified: a crash before it was updated)" if extra else ""
    return VerifyResult(True, res.lines, f"chain intact: {res.lines} record(s), checkpoint verified{tail}",
                        None, res.last_hash, res.offset)


class AuditLog:
    """Appends records to ``path``, continuing the chain of an existing file.

    Refuses (ValueError) a log that does not verify, including a non-empty log without a
    checkpoint (it could have been cut). ``key_path``: the device key (default
    :func:`apps.medical_imaging.audit_key.default_key_path`), created 0600 on first use.
    """

    def __init__(self, path: str | Path, key_path: str | Path | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._key = load_key(key_path, create=True)
        with self._locked():
            if self.path.is_file() and self.path.stat().st_size:
                res = verify(self.path, self._key)
                if not res.ok:
                    raise ValueError(f"refusing to append to a broken audit chain: {res.message}")
            else:
                res = VerifyResult(True, 0, "empty")
            self._prev, self._count, self._offset = res.last_hash, res.lines, res.offset

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock_path, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _catch_up(self) -> None:
        """Read and check what other processes appended since our last append."""
        size = self.path.stat().st_size if self.path.exists() else 0
        if size == self._offset:
            return
        if size < self._offset:
            raise ValueError(f"audit log {self.path} shrank from {self._offset} to {size} bytes while open")
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            res, _ = _check_lines(fh, self._count + 1, self._prev, self._key)
        if not res.ok:
            raise ValueError(f"refusing to append to a broken audit chain: {res.message}")
        self._prev, self._count, self._offset = res.last_hash, res.lines, self._offset + res.offset

    def append(self, **fields: Any) -> dict[str, Any]:
        missing = [f for f in FIELDS if f not in fields]
        if missing:
            raise ValueError(f"audit record lacks fields {missing}")
        with self._locked():
            self._catch_up()
            rec = {**fields, "prev_hash": self._prev}
            rec["hash"] = _digest(rec)
            rec["mac"] = record_mac(self._key, rec["hash"])
            line = (json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
            with open(self.path, "ab") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self._prev, self._count, self._offset = rec["hash"], self._count + 1, self._offset + len(line)
            write_checkpoint(self.path, self._key, self._count, self._prev)
        return rec
