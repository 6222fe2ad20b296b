"""Resumable, verified HTTP download into ``<dest>.part``, then an atomic rename.

A cut connection keeps the ``.part``; the next attempt asks for the rest with
``Range: bytes=N-`` and appends only if the server answers 206 with the matching
``Content-Range`` (a 200 means the server ignored the range: start again from 0).
The SHA-256 is checked before ``os.replace`` moves the file into place, and a file that
fails the check is deleted, ``.part`` included.
"""
from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from sdk._log import logger
from sdk.bundle.hashing import CHUNK, file_sha256
from sdk.errors import IntegrityError, StoreError

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class Interrupted(Exception):
    """The transfer stopped part-way; the ``.part`` file holds what arrived."""


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _bar(total: int | None, initial: int, name: str, progress: bool):
    from sdk.progress import progress_bar

    return progress_bar(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                        enabled=progress, leave=False)


def _copy_stream(src, part: Path, mode: str, total: int | None, offset: int, progress: bool,
                 limit: int | None = None, what: str = "") -> int:
    """Append ``src`` to ``part``; stops (IntegrityError, ``.part`` removed) once it passes ``limit`` bytes."""
    written = 0
    with open(part, mode) as fo, _bar(total, offset, part.name[:-5], progress) as bar:
        try:
            while chunk := src.read(CHUNK):
                if limit is not None and offset + written + len(chunk) > limit:
                    fo.close()
                    part.unlink(missing_ok=True)
                    raise IntegrityError(f"{what or part.name} is larger than the {limit} bytes the catalog declares; "
                                         f"stopped after {offset + written} bytes and removed the partial file")
                fo.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
        except (http.client.HTTPException, OSError) as exc:  # IncompleteRead, reset, timeout
            fo.flush()
            raise Interrupted(f"{type(exc).__name__}: {exc}") from exc
        fo.flush()
        os.fsync(fo.fileno())
    return written


def copy_verified(src, dest: Path, *, expected_sha256: str | None, expected_size: int | None, what: str) -> str:
    """Copy the open binary stream ``src`` to ``dest`` through ``dest.part``: capped at
    ``expected_size`` while it is read, hashed, compared, renamed atomically. Returns the SHA-256."""
    import hashlib

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    h, n = hashlib.sha256(), 0
    try:
        with open(part, "wb") as fo:
            while chunk := src.read(CHUNK):
                n += len(chunk)
                if expected_size is not None and n > expected_size:
                    raise IntegrityError(f"{what} is larger than the {expected_size} bytes the catalog declares; "
                                         "stopped reading it and removed the partial copy")
                h.update(chunk)
                fo.write(chunk)
            fo.flush()
            os.fsync(fo.fileno())
        if expected_size is not None and n != expected_size:
            raise IntegrityError(f"{what} has the wrong size: expected {expected_size} bytes, got {n}; not installed")
        got = h.hexdigest()
        if expected_sha256 is not None and got != expected_sha256:
            raise IntegrityError(f"{what} failed its SHA-256 check: expected {expected_sha256}, got {got}; "
                                 "not installed")
        os.replace(part, dest)
        return got
    finally:
        part.unlink(missing_ok=True)


def fetch_once(url: str, part: Path, *, progress: bool, timeout: float, user_agent: str,
               limit: int | None = None) -> bool:
    """One attempt: append the rest of ``url`` to ``part`` (or start over). Interrupted on a cut.

    Returns True when the server vouched that the file is complete (all of Content-Length
    arrived, or a 416 to a range starting at the end), False when it could not tell.
    """
    offset = part.stat().st_size if part.exists() else 0
    if urlparse(url).scheme == "file":
        src = Path(url2pathname(urlparse(url).path))
        if not src.is_file():
            raise StoreError(f"download of {url} failed: {src} is not a file")
        size = src.stat().st_size
        if offset > size:
            part.unlink()
            offset = 0
        with open(src, "rb") as fi:
            fi.seek(offset)
            _copy_stream(fi, part, "ab" if offset else "wb", size, offset, progress, limit, url)
        return True
    req = urllib.request.Request(url, headers={"User-Agent": user_agent, "Accept-Encoding": "identity"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:  # our range starts at the end: the .part may be complete
            logger.info("server answered 416 to Range bytes=%d-: checking %s as complete", offset, part)
            return True
        raise StoreError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StoreError(f"download of {url} failed: could not connect ({reason})") from exc
    with resp:
        status = getattr(resp, "status", None) or 200
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if offset and status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                part.unlink()
                raise Interrupted(f"server answered Content-Range {resp.headers.get('Content-Range')!r} "
                                  f"to a request from byte {offset}; starting again from 0")
            mode, total = "ab", (int(m.group(3)) if m.group(3) != "*" else None)
        elif status == 200:
            if offset:
                logger.info("server ignored the Range request for %s; downloading again from byte 0", url)
            offset, mode, total = 0, "wb", length
        else:
            raise StoreError(f"download of {url} failed: unexpected HTTP {status}")
        if limit is not None and total is not None and total > limit:
            resp.close()
            part.unlink(missing_ok=True)
            raise IntegrityError(f"download of {url} announces {total} bytes but the catalog declares {limit}; "
                                 "refused before reading the body")
        written = _copy_stream(resp, part, mode, total, offset, progress, limit, f"download of {url}")
        if length is not None and written < length:
            raise Interrupted(f"connection closed after {written} of {length} bytes")
        return length is not None


def download(url: str, dest: Path, *, expected_sha256: str | None, expected_size: int | None,
             progress: bool = True, retries: int = 2, timeout: float = 30.0,
             user_agent: str = "edgewise") -> str:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify, rename; returns the SHA-256.

    ``expected_sha256=None`` (trust on first use) skips the hash comparison; the caller
    records the returned hash. Raises StoreError (URL + HTTP status) on failure, keeping the
    ``.part`` for a later resume when the transfer was cut; IntegrityError on a size or
    hash mismatch, with the ``.part`` removed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    tries = 0
    while True:
        try:
            complete = fetch_once(url, part, progress=progress, timeout=timeout, user_agent=user_agent,
                                  limit=expected_size)
            have = part.stat().st_size if part.exists() else 0
            if not complete and expected_size is not None and have < expected_size:
                raise Interrupted(f"got {have} of {expected_size} bytes")
            break
        except Interrupted as exc:
            tries += 1
            have = part.stat().st_size if part.exists() else 0
            if tries > retries:
                raise StoreError(f"download of {url} was interrupted ({exc}); tried {tries} times. {have} bytes "
                                 f"are kept in {part}: run the pull again to resume") from exc
            logger.warning("download of %s interrupted (%s); resuming from byte %d (retry %d of %d)",
                           url, exc, have, tries, retries)
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink()
        raise IntegrityError(f"download of {url} has the wrong size: expected {expected_size} bytes, got {size}; "
                             "the partial file was removed")
    got = file_sha256(part)
    if expected_sha256 is not None and got != expected_sha256:
        part.unlink()
        raise IntegrityError(f"download of {url} ({dest.name}) failed its SHA-256 check: expected "
                             f"{expected_sha256}, got {got}; the partial file was removed")
    os.replace(part, dest)
    return got
