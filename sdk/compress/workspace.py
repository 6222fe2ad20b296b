"""The state the passes of one run share: calibration data and what is computed from it once.

A :class:`Workspace` holds the calibration data of a recipe run or of a whole
:func:`~sdk.compress.optimize` search, a folder where activation ranges are cached (the
search quantizes one model many ways and calibrates it once per method), and the layer
statistics (input means and Gram matrices of the weighted layers) that the weight
quantizer, the bit allocation and their candidates all need from the same model and data::

    ws = Workspace(calib, cache_dir=work / "calib_cache")
    Recipe([...]).apply(model, out, workspace=ws)      # every pass sees ws.calib
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Hashable, TypeVar

T = TypeVar("T")


class Workspace:
    """Calibration data, an optional calibration-cache folder and a cache of layer statistics."""

    def __init__(self, calib: Any = None, *, cache_dir: str | Path | None = None):
        self.calib = calib
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._stats: dict[Hashable, Any] = {}
        self._memo: dict[Hashable, Any] = {}

    def layer_stats(self, model_path: str | Path, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``'s statistics of ``model_path`` under ``key``, computed once per file
        version (path, size and modification time are part of the key)."""
        p = Path(model_path)
        st = p.stat()
        full = (str(p.resolve()), st.st_size, st.st_mtime_ns, key)
        if full not in self._stats:
            self._stats[full] = compute()
        return self._stats[full]

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per ``key`` for the life of the workspace (a result that depends on
        the data and on what the key names, not on a file: trained weights)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def __repr__(self) -> str:
        calib = getattr(self.calib, "name", type(self.calib).__name__) if self.calib is not None else None
        return f"Workspace(calib={calib}, cache_dir={self.cache_dir}, layer_stats={len(self._stats)})"
