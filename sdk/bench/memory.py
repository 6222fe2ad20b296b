"""Process memory: peak RSS over the process life and RSS over a measured span.

Linux reads ``/proc/self/status`` (VmRSS, VmHWM) and resets the high-water mark through
``/proc/self/clear_refs`` so a span's peak is its own; elsewhere ``ru_maxrss`` is used.
"""
from __future__ import annotations

import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def peak_memory_bytes() -> int | None:
    """Peak resident set size of this process so far (``getrusage`` ru_maxrss), or None."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS: bytes; Linux: KiB


def _status_kib(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss_bytes() -> int | None:
    return _status_kib("VmRSS")


class RssTracker:
    """``with RssTracker() as t: ...`` -> ``t.peak_bytes`` (peak RSS during the span, or the
    process peak where the span's own cannot be isolated) and ``t.delta_bytes`` (peak minus
    the RSS at entry: what the span added).

    On Linux, entering resets this process's VmHWM (``/proc/self/clear_refs``), so the
    process-wide high-water mark read afterwards starts from that point.
    """

    def __init__(self) -> None:
        self.start_bytes: int | None = None
        self.peak_bytes: int | None = None
        self.delta_bytes: int | None = None
        self.isolated = False

    def __enter__(self) -> "RssTracker":
        try:  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
            self.isolated = True
        except OSError:
            self.isolated = False
        self.start_bytes = current_rss_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = _status_kib("VmHWM")
        self.peak_bytes = hwm if hwm is not None else peak_memory_bytes()
        if self.peak_bytes is not None and self.start_bytes is not None:
            self.delta_bytes = max(0, self.peak_bytes - self.start_bytes)
