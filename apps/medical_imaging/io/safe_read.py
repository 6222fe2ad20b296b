"""Read an input file only if it is a regular file, and never more than a bound.

A folder handed to the triage may hold anything: a symlink to ``/dev/zero`` (an endless
stream: ``read_bytes()`` grows until the process is killed), a FIFO (``open()`` blocks
until a writer appears: forever), a socket, a device, a file the user may not read, or
a file that grows while it is read. Each is refused with a reason, so the batch goes on.

The file is opened with ``O_NONBLOCK`` (a FIFO opens at once instead of waiting for a
writer), the *open descriptor* is checked with ``fstat`` (so a path swapped between a
check and the open cannot sneak a device in), and at most ``max_bytes + 1`` bytes are
read, whatever the size the file claims.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from sdk.errors import DecodeError

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def file_kind(mode: int) -> str:
    """Human name of a non-regular file type."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def read_regular_file(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of ``path`` if it is (or links to) a regular file of at most ``max_bytes``.

    Raises FileNotFoundError if the file is gone (or a dangling symlink), DecodeError with
    the reason otherwise (special file, unreadable, oversize, grew while read, empty).
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except PermissionError as exc:
        raise DecodeError(f"unreadable file: permission denied ({exc.strerror})") from exc
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO some systems refuse to open non-blocking
            raise DecodeError("not a regular file (a socket or FIFO): refused unread") from exc
        if exc.errno == errno.ELOOP:
            raise DecodeError("symlink loop: refused unread") from exc
        raise DecodeError(f"unreadable file: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            via = " (through a symlink)" if path.is_symlink() else ""
            raise DecodeError(f"not a regular file: {file_kind(st.st_mode)}{via}; refused unread")
        if st.st_size > max_bytes:
            raise DecodeError(f"file is {st.st_size} bytes, above the limit of {max_bytes}; refused unread")
        chunks, total = [], 0
        while total <= max_bytes:
            try:
                chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            except BlockingIOError:  # never for a regular file; kept so nothing can spin
                raise DecodeError("file would block while read: refused") from None
            except OSError as exc:
                raise DecodeError(f"read error: {exc.strerror or exc}") from exc
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise DecodeError(f"file grew past the limit of {max_bytes} bytes while it was read; refused")
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if not data:
        raise DecodeError("empty file (0 bytes)")
    return data
