"""A worker's scratch folder for a processor's side files, removed when the worker ends.

Ray may end an actor with a hard kill (no ``atexit``, no finaliser), so each folder carries
its worker's process id (``edgewise-batch-<job>-<pid>-XXXX``) and every new one first removes
the folders of processes on this machine that no longer exist.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(job: str) -> int:
    """Remove this machine's scratch folders of ``job`` whose worker process is gone; returns
    how many."""
    if not re.fullmatch(r"[a-z0-9_]+", job):
        raise ValueError(f"job must be lower-case letters, digits or _, got {job!r}")
    n = 0
    for d in Path(tempfile.gettempdir()).glob(f"edgewise-batch-{job}-*"):
        m = re.fullmatch(rf"edgewise-batch-{job}-(\d+)-.+", d.name)
        if m and d.is_dir() and not d.is_symlink() and not _alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)
            n += 1
    return n


def scratch_dir(job: str, owner: object) -> Path:
    """A new folder for ``owner`` (removed when it is collected or the worker exits); stale
    folders of dead workers of the same job are removed first."""
    remove_stale(job)
    path = Path(tempfile.mkdtemp(prefix=f"edgewise-batch-{job}-{os.getpid()}-"))
    weakref.finalize(owner, shutil.rmtree, str(path), True)
    return path
