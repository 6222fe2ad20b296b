"""Path rules shared by manifests, archives, external data and the store.

A *relpath* names a file inside a bundle: POSIX separators, relative, no ``..``, no
backslash, no empty or ``.`` component. Everything that turns a relpath into a real path
goes through :func:`resolve_inside`, which also refuses symlinks on the way.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePosixPath

from sdk.errors import UnsafePathError

_DRIVE_RE = re.compile(r"^[A-Za-z]:")


def relpath_problem(rel: str) -> str | None:
    """Why ``rel`` is not an acceptable bundle-relative path, or None if it is."""
    if not isinstance(rel, str) or not rel:
        return "it is empty"
    if "\x00" in rel:
        return "it contains a NUL byte"
    if "\\" in rel:
        return "it contains a backslash (use '/' as the separator)"
    if rel.startswith("/") or _DRIVE_RE.match(rel):
        return "it is absolute"
    parts = rel.split("/")
    if ".." in parts:
        return "it climbs out of the bundle with '..'"
    if any(p in ("", ".") for p in parts):
        return "it has an empty or '.' component"
    return None


def check_relpath(rel: str, what: str = "path") -> str:
    """Return ``rel`` if it is a safe bundle-relative path, else raise ValueError."""
    problem = relpath_problem(rel)
    if problem:
        raise ValueError(f"{what} {rel!r} must be a relative POSIX path inside the bundle, but {problem}")
    return rel


def resolve_inside(root: Path, rel: str, *, what: str) -> Path:
    """Map ``rel`` under ``root``, refusing symlinks on every component and escapes.

    Raises :class:`UnsafePathError` naming ``what`` (e.g. ``"file 'a/b.onnx'"``) and the
    reason. The returned path may not exist; the caller checks that.
    """
    problem = relpath_problem(rel)
    if problem:
        raise UnsafePathError(f"{what}: path {rel!r} refused because {problem}")
    cur = root
    for part in PurePosixPath(rel).parts:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            break
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(f"{what}: path {rel!r} refused because {cur.relative_to(root)!s} is a symlink")
    real_root = os.path.realpath(root)
    real = os.path.realpath(root / rel)
    if os.path.commonpath([real_root, real]) != real_root:
        raise UnsafePathError(f"{what}: path {rel!r} resolves to {real}, outside the bundle {real_root}")
    return root / rel


def is_regular_file(path: Path) -> bool:
    """True for a regular file that is not a symlink."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False
