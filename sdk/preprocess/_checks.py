"""Input checks shared by the preprocessing operations (private).

Every check raises :class:`sdk.errors.PreprocessError` with a message of the form
``"expected HxWx3 uint8 image, got shape (2, 3) dtype float64"``.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from sdk.errors import PreprocessError


def _describe(x) -> str:
    if isinstance(x, np.ndarray):
        return f"shape {tuple(x.shape)} dtype {x.dtype}"
    return f"{type(x).__name__}"


def _expected(channels: Sequence[int] | None, dtypes: Sequence[str] | None, allow_2d: bool) -> str:
    if channels is None:
        shape = "HxW or HxWxC" if allow_2d else "HxWxC"
    else:
        cs = "/".join(str(c) for c in channels)
        shape = f"HxWx{cs}"
        if allow_2d:
            shape = f"HxW or {shape}"
    dt = " or ".join(dtypes) if dtypes else "any dtype"
    return f"{shape} {dt} image"


def check_image(
    img,
    what: str = "",
    *,
    channels: Sequence[int] | None = None,
    dtypes: Iterable[str] | None = None,
    allow_2d: bool = True,
) -> np.ndarray:
    """Validate an HxW / HxWxC image; return it unchanged (as an ndarray)."""
    dts = tuple(dtypes) if dtypes is not None else None
    prefix = f"{what}: " if what else ""
    exp = _expected(channels, dts, allow_2d)
    if not isinstance(img, np.ndarray):
        raise PreprocessError(f"{prefix}expected {exp} as np.ndarray, got {_describe(img)}")
    ok_ndim = img.ndim == 3 or (allow_2d and img.ndim == 2)
    ok_ch = img.ndim == 2 or channels is None or img.shape[2] in channels
    ok_dt = dts is None or img.dtype.name in dts
    empty = img.size == 0
    if not (ok_ndim and ok_ch and ok_dt) or empty:
        why = " (empty image)" if empty and ok_ndim else ""
        raise PreprocessError(f"{prefix}expected {exp}, got {_describe(img)}{why}")
    return img


def check_signal(x, what: str = "", *, max_ndim: int = 1) -> np.ndarray:
    """Validate a 1-D (or up to ``max_ndim``) numeric, non-empty audio signal."""
    prefix = f"{what}: " if what else ""
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.ndim == 0 or x.ndim > max_ndim or x.size == 0 or not (
        np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
    ):
        shape = "(n,)" if max_ndim == 1 else f"an array of up to {max_ndim} dims"
        raise PreprocessError(
            f"{prefix}expected a non-empty numeric signal of shape {shape}, got {_describe(x)}"
        )
    return x


def hw(size) -> tuple[int, int]:
    """Normalise a size argument to ``(height, width)``; an int means a square."""
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        try:
            h, w = (int(s) for s in size)
        except (TypeError, ValueError):
            raise ValueError(f"size must be an int or (height, width), got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got (height={h}, width={w})")
    return h, w
