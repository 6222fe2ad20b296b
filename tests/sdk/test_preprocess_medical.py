"""Medical value transforms against hand-computed DICOM values."""
from __future__ import annotations

import numpy as np
import pytest

from sdk.errors import PreprocessError
from sdk.preprocess import invert, rescale_slope_intercept, window


def test_rescale_slope_intercept_ct():
    stored = np.array([[0, 1024], [2048, 4095]], np.uint16)
    hu = rescale_slope_intercept(stored, 1.0, -1024.0)
    assert hu.dtype == np.float32
    assert hu.tolist() == [[-1024, 0], [1024, 3071]]
    assert rescale_slope_intercept(np.array([3], np.int16), 0.5, 1.0).tolist() == [2.5]


def test_window_hand_computed_values():
    # c=40, w=400 (soft tissue): lower threshold c-0.5-(w-1)/2 = -160, upper = 239
    x = np.array([-1000, -160, -159, 39.5, 40, 239, 240, 3000], np.float32)
    f = window(x, 40, 400, out="float")
    expect = [0.0, 0.0, 1 / 399, 0.5, 0.5 + 0.5 / 399, 1.0, 1.0, 1.0]
    assert f.dtype == np.float32
    assert np.abs(f - np.array(expect)).max() < 1e-7
    u8 = window(x, 40, 400)
    assert u8.dtype == np.uint8
    assert u8.tolist() == [0, 0, 1, 128, 128, 255, 255, 255]  # 127.5 -> 128 (half to even)
    # width 1: step at c - 0.5
    assert window(np.array([9, 9.5, 10]), 10, 1, out="float").tolist() == [0, 0, 1]
    # invert for MONOCHROME1
    assert window(x, 40, 400, invert=True).tolist() == [255 - v for v in u8.tolist()]


def test_window_matches_piecewise_definition_on_a_grid():
    x = np.arange(-2000, 2000, 0.25)
    c, w = 300.0, 1500.0
    lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    ref = np.where(x <= lo, 0.0, np.where(x > hi, 1.0, (x - (c - 0.5)) / (w - 1) + 0.5))
    assert np.abs(window(x, c, w, out="float") - ref).max() < 1e-7


@pytest.mark.parametrize("width", [0, 0.5, -3, float("nan")])
def test_window_rejects_bad_width(width):
    with pytest.raises(ValueError, match="width"):
        window(np.zeros(3), 0, width)


def test_window_rejects_non_numeric():
    with pytest.raises(PreprocessError, match="numeric"):
        window(np.array(["a"]), 0, 10)


def test_invert():
    assert invert(np.array([0, 10, 255], np.uint8)).tolist() == [255, 245, 0]
    assert invert(np.array([0.0, 0.25, 1.0], np.float32)).tolist() == [1.0, 0.75, 0.0]
    assert invert(np.array([0, 4095], np.uint16), max_value=4095).tolist() == [4095, 0]
