"""Image preprocessing: letterbox geometry and inverse, resize, normalise, layout, CLAHE."""
from __future__ import annotations

import numpy as np
import pytest

import sdk.preprocess as pp
from sdk.errors import PreprocessError


def _img(h, w, c=3, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    shape = (h, w) if c is None else (h, w, c)
    return rng.integers(0, 255, shape).astype(dtype)


SHAPES = [(480, 640), (640, 480), (720, 1280), (1080, 1920), (300, 300), (37, 1001), (1001, 37),
          (416, 416), (100, 50)]


@pytest.mark.parametrize("src", SHAPES)
@pytest.mark.parametrize("dst", [(416, 416), (384, 640), (640, 384)])
@pytest.mark.parametrize("center", [False, True])
def test_letterbox_round_trip_exact(src, dst, center):
    img = _img(*src)
    out, t = pp.letterbox(img, dst, pad_value=114, center=center)
    assert out.shape == (*dst, 3) and out.dtype == np.uint8
    nh, nw = t.resized_shape
    assert nh <= dst[0] and nw <= dst[1]
    assert nh == dst[0] or nw == dst[1]  # one side fills the canvas
    rng = np.random.default_rng(1)
    h, w = src
    x1 = rng.uniform(0, w, 50); x2 = rng.uniform(x1, w)
    y1 = rng.uniform(0, h, 50); y2 = rng.uniform(y1, h)
    boxes = np.stack([x1, y1, x2, y2], 1)
    lb = t.to_letterboxed(boxes)
    # the boxes lie inside the resized image area of the canvas
    assert lb[:, [0, 2]].min() >= t.pad_x - 1e-9 and lb[:, [0, 2]].max() <= t.pad_x + nw + 1e-9
    assert lb[:, [1, 3]].min() >= t.pad_y - 1e-9 and lb[:, [1, 3]].max() <= t.pad_y + nh + 1e-9
    back = t.to_original(lb)
    assert np.abs(back - boxes).max() < 1e-4


def test_letterbox_padding_placement_and_value():
    img = np.full((200, 400, 3), 7, np.uint8)
    out, t = pp.letterbox(img, (416, 416), pad_value=114)           # top-left (YOLOX)
    assert (t.pad_x, t.pad_y, t.resized_shape, t.scale) == (0, 0, (208, 416), 416 / 400)
    assert (out[:208] == 7).all() and (out[208:] == 114).all()
    out, t = pp.letterbox(img, (416, 416), pad_value=0, center=True)
    assert (t.pad_x, t.pad_y) == (0, 104)
    assert (out[:104] == 0).all() and (out[104:312] == 7).all() and (out[312:] == 0).all()


def test_letterbox_matches_yolox_preproc():
    """YOLOX's preproc: r = min(ratios), resize to int(w*r) x int(h*r), top-left, pad 114."""
    import cv2

    img = _img(540, 960)
    r = min(416 / 540, 416 / 960)
    ref = np.full((416, 416, 3), 114, np.uint8)
    res = cv2.resize(img, (int(960 * r), int(540 * r)), interpolation=cv2.INTER_LINEAR)
    ref[: res.shape[0], : res.shape[1]] = res
    out, t = pp.letterbox(img, 416)
    assert t.scale == pytest.approx(r)
    assert np.array_equal(out, ref)


def test_to_original_clips_and_keeps_extra_columns():
    img = _img(100, 200)
    _, t = pp.letterbox(img, (416, 416))
    dets = np.array([[-10.0, -10.0, 500.0, 500.0, 0.9, 2.0]], np.float32)
    back = t.to_original(dets)
    assert back.dtype == np.float32
    assert back[0, :4].tolist() == [0.0, 0.0, 200.0, 100.0]
    assert back[0, 4:].tolist() == pytest.approx([0.9, 2.0])
    assert t.to_original(dets, clip=False)[0, 2] > 200
    with pytest.raises(ValueError):
        t.to_original(np.zeros((3, 2)))
    # the contract's 4-field constructor works (no canvas clamp)
    t4 = pp.LetterboxTransform(0.5, 0, 10, (100, 200))
    assert t4.to_original([[0, 10, 100, 60]]).tolist() == [[0, 0, 200, 100]]


def test_letterbox_keeps_channels_and_dtypes():
    g = _img(50, 80, c=None)
    out, _ = pp.letterbox(g, (64, 64))
    assert out.shape == (64, 64)
    one = _img(50, 80, c=1)
    assert pp.letterbox(one, (64, 64))[0].shape == (64, 64, 1)
    u16 = _img(50, 80, dtype=np.uint16)
    assert pp.letterbox(u16, (64, 64))[0].dtype == np.uint16


@pytest.mark.parametrize("bad, match", [
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((10,), np.uint8), r"shape \(10,\)"),
    (np.zeros((2, 10, 10, 3), np.uint8), r"shape \(2, 10, 10, 3\)"),
    (np.zeros((10, 10, 3), np.bool_), "dtype bool"),
    ([[1, 2], [3, 4]], "list"),
])
def test_letterbox_bad_input(bad, match):
    with pytest.raises(PreprocessError, match=match):
        pp.letterbox(bad, (32, 32))


def test_letterbox_pad_value_must_fit_dtype():
    with pytest.raises(PreprocessError, match=r"pad_value 300 does not fit a uint8"):
        pp.letterbox(_img(10, 20), (32, 32), pad_value=300)
    assert pp.letterbox(_img(10, 20, dtype=np.uint16), (32, 32), pad_value=300)[0][-1, -1, 0] == 300


def test_resize_size_is_height_width():
    img = _img(10, 20)
    assert pp.resize(img, (30, 40)).shape == (30, 40, 3)
    assert pp.resize(_img(10, 20, c=1), (5, 6), "nearest").shape == (5, 6, 1)
    with pytest.raises(ValueError, match="interpolation"):
        pp.resize(img, (5, 5), "bogus")


def test_normalize_imagenet_and_channel_axis():
    img = _img(4, 5)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = pp.normalize(img, mean, std, scale=1 / 255)
    ref = (img.astype(np.float64) / 255 - np.array(mean)) / np.array(std)
    assert x.dtype == np.float32 and np.abs(x - ref).max() < 1e-5
    chw = pp.to_layout(img, "CHW")
    y = pp.normalize(chw, mean, std, scale=1 / 255, channel_axis=0)
    assert np.abs(y - x.transpose(2, 0, 1)).max() < 1e-6
    with pytest.raises(PreprocessError, match="channels"):
        pp.normalize(img, (1, 2), 1.0)


def test_layouts_and_batch():
    img = _img(4, 5)
    assert pp.to_layout(img, "CHW").shape == (3, 4, 5)
    assert pp.to_layout(img, "NCHW").shape == (1, 3, 4, 5)
    assert pp.to_layout(img, "NHWC").shape == (1, 4, 5, 3)
    assert np.array_equal(pp.to_layout(img, "CHW")[1], img[:, :, 1])
    assert pp.to_layout(_img(4, 5, c=None), "NCHW").shape == (1, 1, 4, 5)
    assert pp.add_batch_dim(img).shape == (1, 4, 5, 3)


def test_color_convert():
    img = _img(4, 5)
    assert np.array_equal(pp.color_convert(img, "BGR", "RGB"), img[:, :, ::-1])
    assert pp.color_convert(img, "BGR", "GRAY").shape == (4, 5)
    with pytest.raises(PreprocessError, match=r"expected HxWx3"):
        pp.color_convert(_img(4, 5, c=None), "BGR", "RGB")


def test_cast_dtype_saturates():
    x = np.array([-3.6, 0.4, 254.6, 300.0])
    assert pp.cast_dtype(x, "uint8").tolist() == [0, 0, 255, 255]
    assert pp.cast_dtype(x, "float16").dtype == np.float16


def test_clahe_uint16_uses_full_range():
    rng = np.random.default_rng(0)
    # low-contrast 12-bit-like image living in 1000..1400
    img = (1000 + 400 * rng.random((128, 128))).astype(np.uint16)
    img[:64] += 200
    out = pp.clahe(img, clip_limit=2.0, tile_grid=(4, 4))
    assert out.dtype == np.uint16 and out.shape == img.shape
    assert out.std() > 5 * img.std()            # contrast was stretched
    assert out.max() > 10_000                    # into the 16-bit range, not clipped to 255
    u8 = pp.clahe(_img(64, 64))                     # colour uint8 -> on L channel
    assert u8.shape == (64, 64, 3) and u8.dtype == np.uint8
    with pytest.raises(PreprocessError, match="uint8"):
        pp.clahe(img.astype(np.float32))
