"""Medical-image value transforms: Modality LUT (rescale slope/intercept), VOI windowing
(DICOM PS3.3 C.11.2.1.2), MONOCHROME1 inversion.

VOI LUT *sequences* are left to pydicom (``pydicom.pixels.apply_voi_lut``); these functions
handle the linear cases exactly and vectorised.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from sdk.errors import PreprocessError

__all__ = ["rescale_slope_intercept", "window", "invert"]


def _check_pixels(arr, what: str) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.size == 0 or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        got = (f"shape {tuple(arr.shape)} dtype {arr.dtype}" if isinstance(arr, np.ndarray)
               else type(arr).__name__)
        raise PreprocessError(f"{what}: expected a non-empty numeric pixel array, got {got}")
    return arr


def rescale_slope_intercept(arr: np.ndarray, slope: float = 1.0, intercept: float = 0.0) -> np.ndarray:
    """Modality LUT: ``arr * slope + intercept`` as float32 (e.g. stored values -> HU for CT).

    The product is formed in float64 and rounded once to float32.
    """
    _check_pixels(arr, "rescale_slope_intercept")
    return (arr.astype(np.float64) * float(slope) + float(intercept)).astype(np.float32)


def window(
    arr: np.ndarray,
    center: float,
    width: float,
    out: Literal["uint8", "float"] = "uint8",
    invert: bool = False,
) -> np.ndarray:
    """Apply a linear VOI window, DICOM PS3.3 C.11.2.1.2.1 (the ``LINEAR`` function)::

        x <= c - 0.5 - (w-1)/2        -> y_min
        x >  c - 0.5 + (w-1)/2        -> y_max
        else  y = ((x - (c - 0.5)) / (w - 1) + 0.5) * (y_max - y_min) + y_min

    ``out="uint8"`` maps to 0..255 (rounded half to even), ``out="float"`` to float32 0..1.
    The linear branch reaches exactly ``y_min``/``y_max`` at the two thresholds, so the
    piecewise function equals ``clip(linear, y_min, y_max)``, which is what is computed
    (in float64). ``width`` must be >= 1; ``width == 1`` is the standard's step function.
    ``invert=True`` flips the output (``y_max - y``; for uint8 after rounding, so it is the
    exact complement ``255 - window(...)``) for MONOCHROME1 images.
    """
    _check_pixels(arr, "window")
    if not np.isfinite(width) or width < 1:
        raise ValueError(f"window width must be >= 1 (DICOM C.11.2.1.2.1), got {width!r}")
    if out not in ("uint8", "float"):
        raise ValueError(f"out must be 'uint8' or 'float', got {out!r}")
    y_max = 255.0 if out == "uint8" else 1.0
    c = float(center)
    w = float(width)
    x = arr.astype(np.float64)
    if w == 1.0:
        y = np.where(x <= c - 0.5, 0.0, y_max)
    else:
        y = ((x - (c - 0.5)) / (w - 1.0) + 0.5) * y_max
        np.clip(y, 0.0, y_max, out=y)
    if out == "uint8":
        u8 = np.rint(y).astype(np.uint8)
        return 255 - u8 if invert else u8      # exact complement of the non-inverted output
    return (y_max - y if invert else y).astype(np.float32)


def invert(arr: np.ndarray, max_value: float | None = None) -> np.ndarray:
    """Invert intensities (MONOCHROME1 -> MONOCHROME2), keeping the dtype.

    Integers: ``max_value + min - arr`` where ``max_value`` defaults to the dtype's maximum
    and ``min`` is 0 for unsigned / the dtype's minimum for signed types (so uint8 maps
    ``v -> 255 - v``). Floats (windowed to 0..1): ``max_value - arr``, default 1.0.
    """
    _check_pixels(arr, "invert")
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        hi = info.max if max_value is None else max_value
        lo = info.min if info.min < 0 else 0
        return (hi + lo - arr.astype(np.int64)).clip(info.min, info.max).astype(arr.dtype)
    hi = 1.0 if max_value is None else float(max_value)
    return (hi - arr).astype(arr.dtype)
