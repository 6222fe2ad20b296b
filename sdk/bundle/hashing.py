"""SHA-256 of files and bytes, streamed so a multi-gigabyte model never sits in memory."""
from __future__ import annotations

import hashlib
import os
import re

CHUNK = 1 << 20  # 1 MiB
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def bytes_sha256(data: bytes | bytearray | memoryview) -> str:
    """Hex SHA-256 of an in-memory buffer."""
    return hashlib.sha256(data).hexdigest()


def check_sha256(value: str) -> str:
    """Return ``value`` lower-cased if it is 64 hex digits, else raise ValueError."""
    v = value.strip().lower()
    if not _SHA256_RE.match(v):
        raise ValueError(f"a SHA-256 must be 64 hex digits, but got {value!r}")
    return v

