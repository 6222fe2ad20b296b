"""Preprocessing specs: JSON round trip, identical output, errors naming the step."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

import sdk.preprocess as pp
from sdk.errors import PreprocessError

YOLOX = pp.PreprocessSpec(ops=[pp.ExpectImage(), pp.Letterbox(size=(416, 416), pad_value=114),
                               pp.ToLayout(layout="NCHW"), pp.CastDtype(dtype="float32"), pp.AddBatchDim()])
XRAY = pp.PreprocessSpec(ops=[pp.RescaleSlopeIntercept(slope=1.0, intercept=-1024),
                              pp.Window(center=40, width=400), pp.Clahe(clip_limit=2.0, tile_grid=(4, 4)),
                              pp.Resize(size=(28, 28), interpolation="area"),
                              pp.Normalize(mean=0.5, std=0.5, scale=1 / 255), pp.ToLayout(layout="CHW"),
                              pp.AddBatchDim()])
RGB = pp.PreprocessSpec(ops=[pp.ColorConvert(src="BGR", dst="RGB"), pp.Resize(size=(224, 224)),
                             pp.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                                          scale=1 / 255),
                             pp.ToLayout(layout="NCHW")])


@pytest.mark.parametrize("spec, make", [
    (YOLOX, lambda r: r.integers(0, 255, (480, 640, 3)).astype(np.uint8)),
    (XRAY, lambda r: r.integers(0, 4096, (64, 80)).astype(np.uint16)),
    (RGB, lambda r: r.integers(0, 255, (300, 200, 3)).astype(np.uint8)),
])
def test_json_round_trip_reproduces_output(spec, make):
    text = spec.model_dump_json()
    again = pp.PreprocessSpec.model_validate_json(text)
    assert again == spec
    assert pp.PreprocessSpec.model_validate(json.loads(text)) == spec
    assert pp.PreprocessSpec.model_validate(text) == spec          # JSON text accepted too
    img = make(np.random.default_rng(0))
    a, b = spec.build()(img), again.build()(img)
    assert a.dtype == b.dtype and np.array_equal(a, b)


def test_yolox_spec_shape_and_transform():
    img = np.random.default_rng(0).integers(0, 255, (540, 960, 3)).astype(np.uint8)
    pre = YOLOX.build()
    assert pre.last_transform is None
    x = pre(img)
    assert x.shape == (1, 3, 416, 416) and x.dtype == np.float32   # AddBatchDim after NCHW: no-op
    ref, t = pp.letterbox(img, (416, 416), 114)
    assert np.array_equal(x[0].transpose(1, 2, 0), ref.astype(np.float32))
    assert pre.last_transform == t
    assert pp.Preprocessor(YOLOX.model_dump_json())(img).shape == x.shape


def test_spec_is_strict_and_frozen():
    with pytest.raises(ValidationError):
        pp.Letterbox(size=(416, 416), pad_valu=114)          # misspelt key
    with pytest.raises(ValidationError):
        pp.PreprocessSpec.model_validate({"ops": [{"op": "sharpen"}]})
    with pytest.raises(ValidationError):
        pp.Window(center=0, width=0)
    with pytest.raises(ValidationError):
        pp.Normalize(std=(1.0, 0.0))
    with pytest.raises(ValidationError):
        YOLOX.ops[1].size = (1, 1)


@pytest.mark.parametrize("img, match", [
    (np.zeros((480, 640), np.uint8), r"expected HxWx3 uint8 image, got shape \(480, 640\) dtype uint8"),
    (np.zeros((480, 640, 4), np.uint8), r"got shape \(480, 640, 4\)"),
    (np.zeros((480, 640, 3), np.float32), r"dtype float32"),
    (np.zeros((0, 640, 3), np.uint8), r"empty"),
    (np.zeros((1, 480, 640, 3), np.uint8), r"got shape \(1, 480, 640, 3\)"),
    ("not an image", r"got str"),
])
def test_bad_input_table(img, match):
    with pytest.raises(PreprocessError, match=match) as ei:
        YOLOX.build()(img)
    assert "step 0 (expect_image)" in str(ei.value)


def test_error_names_a_later_step():
    spec = pp.PreprocessSpec(ops=[pp.Resize(size=(8, 8)), pp.ColorConvert(src="BGR", dst="RGB")])
    with pytest.raises(PreprocessError, match=r"step 1 \(color_convert\)"):
        spec.build()(np.zeros((4, 4), np.uint8))


def test_audio_ops_in_a_spec():
    spec = pp.PreprocessSpec(ops=[pp.Resample(sr_in=22050, sr_out=16000), pp.LogMel(n_mels=80)])
    again = pp.PreprocessSpec.model_validate_json(spec.model_dump_json())
    t = np.arange(22050) / 22050
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    a = again.build()(x)
    assert a.shape == (80, 100) and np.array_equal(a, spec.build()(x))
