"""Image operations: resize, letterbox (with its exact inverse for boxes), normalise,
layout, colour conversion, CLAHE, dtype casts.

Images are numpy arrays in HWC order (HxW for single-channel), as OpenCV reads them.
Sizes are always ``(height, width)`` (an int means a square), unlike ``cv2.resize``'s
``(width, height)``. Everything is vectorised (OpenCV or numpy); no per-pixel Python.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import cv2
import numpy as np

from sdk.errors import PreprocessError
from sdk.preprocess._checks import check_image, hw

__all__ = [
    "INTERPOLATIONS", "LetterboxTransform", "resize", "letterbox", "normalize", "to_layout",
    "color_convert", "clahe", "cast_dtype", "add_batch_dim",
]

Interpolation = Literal["nearest", "linear", "area", "cubic", "lanczos"]
INTERPOLATIONS: dict[str, int] = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
_RESIZE_DTYPES = ("uint8", "uint16", "int16", "float32", "float64")


def _interp(name: str) -> int:
    try:
        return INTERPOLATIONS[name]
    except KeyError:
        raise ValueError(
            f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {name!r}"
        ) from None


def resize(img: np.ndarray, size, interpolation: Interpolation = "linear") -> np.ndarray:
    """Resize to ``size`` = ``(height, width)`` (aspect ratio not kept; see :func:`letterbox`)."""
    check_image(img, "resize", dtypes=_RESIZE_DTYPES)
    h, w = hw(size)
    out = cv2.resize(img, (w, h), interpolation=_interp(interpolation))
    if img.ndim == 3 and out.ndim == 2:  # cv2 drops a trailing channel of 1
        out = out[:, :, None]
    return out


@dataclass(frozen=True)
class LetterboxTransform:
    """The geometry of one :func:`letterbox` call, and its exact inverse for boxes.

    ``scale`` is the ratio ``min(dst_h / src_h, dst_w / src_w)``; the image was resized to
    ``resized_shape = (round(src_h * scale), round(src_w * scale))`` and placed at
    ``(pad_x, pad_y)`` in a ``dst_shape`` canvas. Because of the rounding the true
    per-axis factors (:attr:`scale_x`, :attr:`scale_y`) differ from ``scale`` by less than
    half a pixel over the image; the box mappings use the true factors, so
    ``to_original(to_letterboxed(b)) == b`` up to float rounding.
    Shapes are ``(height, width)``.
    """

    scale: float
    pad_x: int
    pad_y: int
    src_shape: tuple[int, int]
    dst_shape: tuple[int, int] | None = None

    @property
    def resized_shape(self) -> tuple[int, int]:
        sh, sw = self.src_shape
        nh, nw = max(1, int(round(sh * self.scale))), max(1, int(round(sw * self.scale)))
        if self.dst_shape is not None:
            nh, nw = min(nh, self.dst_shape[0]), min(nw, self.dst_shape[1])
        return nh, nw

    @property
    def scale_x(self) -> float:
        return self.resized_shape[1] / self.src_shape[1]

    @property
    def scale_y(self) -> float:
        return self.resized_shape[0] / self.src_shape[0]

    @staticmethod
    def _boxes(boxes) -> np.ndarray:
        b = np.asarray(boxes, dtype=np.float64)
        if b.ndim == 0 or b.shape[-1] < 4:
            raise ValueError(
                f"boxes must have shape (..., 4) as x1, y1, x2, y2 (extra columns are kept), "
                f"got shape {b.shape}"
            )
        return b.copy()

    def to_original(self, boxes_xyxy, clip: bool = True) -> np.ndarray:
        """Map ``(..., 4+)`` xyxy boxes from the letterboxed image back to the source image.

        Columns beyond the first four (scores, class ids) pass through unchanged. With
        ``clip`` the coordinates are clipped to ``[0, width]`` / ``[0, height]`` of the source.
        Returns float64 (float32 input stays float32).
        """
        src_dtype = np.asarray(boxes_xyxy).dtype
        b = self._boxes(boxes_xyxy)
        b[..., [0, 2]] = (b[..., [0, 2]] - self.pad_x) / self.scale_x
        b[..., [1, 3]] = (b[..., [1, 3]] - self.pad_y) / self.scale_y
        if clip:
            sh, sw = self.src_shape
            b[..., [0, 2]] = np.clip(b[..., [0, 2]], 0.0, sw)
            b[..., [1, 3]] = np.clip(b[..., [1, 3]], 0.0, sh)
        return b.astype(np.float32) if src_dtype == np.float32 else b

    def to_letterboxed(self, boxes_xyxy) -> np.ndarray:
        """Map ``(..., 4+)`` xyxy boxes from the source image into the letterboxed image."""
        src_dtype = np.asarray(boxes_xyxy).dtype
        b = self._boxes(boxes_xyxy)
        b[..., [0, 2]] = b[..., [0, 2]] * self.scale_x + self.pad_x
        b[..., [1, 3]] = b[..., [1, 3]] * self.scale_y + self.pad_y
        return b.astype(np.float32) if src_dtype == np.float32 else b

    def to_dict(self) -> dict:
        return {"scale": self.scale, "pad_x": self.pad_x, "pad_y": self.pad_y,
                "src_shape": list(self.src_shape),
                "dst_shape": None if self.dst_shape is None else list(self.dst_shape)}


def letterbox(
    img: np.ndarray,
    size,
    pad_value: float = 114,
    center: bool = False,
    interpolation: Interpolation = "linear",
) -> tuple[np.ndarray, LetterboxTransform]:
    """Resize keeping the aspect ratio, pad to ``size`` = ``(height, width)``.

    ``center=False`` (the default) puts the image in the top-left corner and pads right and
    bottom, as YOLOX's ``preproc`` does (pad 114); ``center=True`` centres it (Ultralytics
    style; odd padding puts the extra pixel right/bottom). Returns the padded image (same
    dtype and channel count as the input) and the :class:`LetterboxTransform` that maps
    boxes back with :meth:`LetterboxTransform.to_original`.
    """
    check_image(img, "letterbox", dtypes=_RESIZE_DTYPES)
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        if not info.min <= pad_value <= info.max:
            raise PreprocessError(f"letterbox: pad_value {pad_value} does not fit a {img.dtype} "
                                  f"image (expected {info.min}..{info.max})")
    dh, dw = hw(size)
    sh, sw = img.shape[:2]
    scale = min(dh / sh, dw / sw)
    t0 = LetterboxTransform(scale, 0, 0, (sh, sw), (dh, dw))
    nh, nw = t0.resized_shape
    pad_x = (dw - nw) // 2 if center else 0
    pad_y = (dh - nh) // 2 if center else 0
    t = LetterboxTransform(scale, pad_x, pad_y, (sh, sw), (dh, dw))
    if (nh, nw) != (sh, sw):
        resized = cv2.resize(img, (nw, nh), interpolation=_interp(interpolation))
        if img.ndim == 3 and resized.ndim == 2:
            resized = resized[:, :, None]
    else:
        resized = img
    out = np.full((dh, dw) + img.shape[2:], pad_value, dtype=img.dtype)
    out[pad_y:pad_y + nh, pad_x:pad_x + nw] = resized
    return out, t


def _per_channel(v, n: int, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32).reshape(-1)
    if a.size not in (1, n):
        raise PreprocessError(f"normalize: {name} has {a.size} values but the image has {n} channels")
    return a


def normalize(img: np.ndarray, mean=0.0, std=1.0, scale: float = 1.0,
              channel_axis: int = -1) -> np.ndarray:
    """``(img * scale - mean) / std`` in float32; ``mean``/``std`` are scalars or per channel.

    ``channel_axis`` says where the channels are (-1 for HWC, 0 for CHW, 1 for NCHW).
    ImageNet: ``normalize(rgb_u8, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), scale=1/255)``.
    """
    if not isinstance(img, np.ndarray) or img.size == 0 or img.ndim < 2:
        raise PreprocessError(f"normalize: expected a non-empty image array, got "
                              f"{getattr(img, 'shape', type(img).__name__)}")
    shape: list[int]
    if img.ndim == 2:
        n = 1
        shape = [1, 1]
    else:
        ax = channel_axis % img.ndim
        n = img.shape[ax]
        shape = [1] * img.ndim
        shape[ax] = -1
    m = _per_channel(mean, n, "mean")
    s = _per_channel(std, n, "std")
    if np.any(s == 0):
        raise PreprocessError("normalize: std must not contain zeros")
    m = m.reshape(shape) if m.size > 1 else m.reshape(())
    inv = (1.0 / s)
    inv = inv.reshape(shape) if inv.size > 1 else inv.reshape(())
    x = img.astype(np.float32, copy=True)
    if scale != 1.0:
        x *= np.float32(scale)
    x -= m
    x *= inv
    return x


Layout = Literal["HWC", "CHW", "NHWC", "NCHW"]


def to_layout(img: np.ndarray, layout: Layout = "CHW") -> np.ndarray:
    """Turn an HWC (or HxW) image into ``layout``; N layouts add a batch axis of 1.

    The result is C-contiguous (onnxruntime copies non-contiguous inputs anyway).
    """
    check_image(img, "to_layout")
    x = img[:, :, None] if img.ndim == 2 else img
    if layout == "HWC":
        out = x
    elif layout == "CHW":
        out = x.transpose(2, 0, 1)
    elif layout == "NHWC":
        out = x[None]
    elif layout == "NCHW":
        out = x.transpose(2, 0, 1)[None]
    else:
        raise ValueError(f"layout must be one of HWC, CHW, NHWC, NCHW, got {layout!r}")
    return np.ascontiguousarray(out)


ColorSpace = Literal["BGR", "RGB", "GRAY", "BGRA", "RGBA"]
_CHANNELS = {"BGR": 3, "RGB": 3, "GRAY": 1, "BGRA": 4, "RGBA": 4}
_CODES = {
    ("BGR", "RGB"): cv2.COLOR_BGR2RGB, ("RGB", "BGR"): cv2.COLOR_RGB2BGR,
    ("BGR", "GRAY"): cv2.COLOR_BGR2GRAY, ("RGB", "GRAY"): cv2.COLOR_RGB2GRAY,
    ("GRAY", "BGR"): cv2.COLOR_GRAY2BGR, ("GRAY", "RGB"): cv2.COLOR_GRAY2RGB,
    ("BGRA", "BGR"): cv2.COLOR_BGRA2BGR, ("RGBA", "RGB"): cv2.COLOR_RGBA2RGB,
    ("BGRA", "RGB"): cv2.COLOR_BGRA2RGB, ("RGBA", "BGR"): cv2.COLOR_RGBA2BGR,
    ("BGRA", "GRAY"): cv2.COLOR_BGRA2GRAY, ("RGBA", "GRAY"): cv2.COLOR_RGBA2GRAY,
    ("BGR", "BGRA"): cv2.COLOR_BGR2BGRA, ("RGB", "RGBA"): cv2.COLOR_RGB2RGBA,
}


def color_convert(img: np.ndarray, src: ColorSpace = "BGR", dst: ColorSpace = "RGB") -> np.ndarray:
    """Convert between BGR/RGB/GRAY(/A). GRAY output is HxW; same-space is a no-op."""
    if src not in _CHANNELS or dst not in _CHANNELS:
        raise ValueError(f"colour spaces must be among {sorted(_CHANNELS)}, got {src!r} -> {dst!r}")
    n = _CHANNELS[src]
    check_image(img, f"color_convert {src}->{dst}", channels=(n,), allow_2d=(n == 1),
                dtypes=("uint8", "uint16", "float32"))
    if src == dst:
        return img
    code = _CODES.get((src, dst))
    if code is None:
        raise ValueError(f"no conversion from {src} to {dst}")
    return cv2.cvtColor(img, code)


def clahe(img: np.ndarray, clip_limit: float = 2.0, tile_grid: Sequence[int] = (8, 8)) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (``cv2.createCLAHE``).

    HxW (or HxWx1) uint8 / uint16 images are equalised directly (uint16 keeps its full
    range); HxWx3 uint8 BGR images are equalised on the L channel of Lab.
    """
    check_image(img, "clahe", channels=(1, 3), dtypes=("uint8", "uint16"))
    tx, ty = (int(v) for v in tile_grid)
    op = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(tx, ty))
    if img.ndim == 2 or img.shape[2] == 1:
        out = op.apply(np.ascontiguousarray(img.reshape(img.shape[:2])))
        return out.reshape(img.shape)
    if img.dtype != np.uint8:
        raise PreprocessError(f"clahe: expected HxW uint8/uint16 or HxWx3 uint8 image, "
                              f"got shape {img.shape} dtype {img.dtype}")
    lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB)
    lab[:, :, 0] = op.apply(np.ascontiguousarray(lab[:, :, 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


DType = Literal["float32", "float16", "float64", "uint8", "int8", "uint16", "int16", "int32", "int64"]


def cast_dtype(x: np.ndarray, dtype: DType = "float32") -> np.ndarray:
    """Cast to ``dtype`` (no rescaling; a cast to an integer type rounds and saturates)."""
    if not isinstance(x, np.ndarray) or x.size == 0:
        raise PreprocessError(f"cast_dtype: expected a non-empty array, got "
                              f"{getattr(x, 'shape', type(x).__name__)}")
    dt = np.dtype(dtype)
    if x.dtype == dt:
        return x
    if np.issubdtype(dt, np.integer) and not np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(dt)
        return np.clip(np.rint(x), info.min, info.max).astype(dt)
    return x.astype(dt)


def add_batch_dim(x: np.ndarray) -> np.ndarray:
    """Prepend a batch axis of size 1 (a view, no copy)."""
    if not isinstance(x, np.ndarray):
        raise PreprocessError(f"add_batch_dim: expected np.ndarray, got {type(x).__name__}")
    return x[None]
