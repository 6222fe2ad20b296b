"""Preprocessing as data: each operation is a frozen pydantic model with a literal ``op``
field, a :class:`PreprocessSpec` is a list of them (JSON round-trippable, carried in a
bundle's manifest), and :meth:`PreprocessSpec.build` gives a callable :class:`Preprocessor`.

    spec = PreprocessSpec(ops=[Letterbox(size=(416, 416)), ToLayout(layout="NCHW"),
                               CastDtype(dtype="float32")])
    same = PreprocessSpec.model_validate_json(spec.model_dump_json())
    pre = same.build(); x = pre(img_bgr); pre.last_transform.to_original(boxes)
"""
from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

import cv2
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sdk.errors import PreprocessError
from sdk.preprocess import audio as _audio, image as _image, medical as _medical
from sdk.preprocess._checks import check_image

__all__ = [
    "Op", "ExpectImage", "Resize", "Letterbox", "Normalize", "ToLayout", "ColorConvert", "Clahe",
    "Window", "RescaleSlopeIntercept", "CastDtype", "AddBatchDim", "Resample", "LogMel",
    "AnyOp", "PreprocessSpec", "Preprocessor",
]

PosInt = Annotated[int, Field(gt=0)]
Size = tuple[PosInt, PosInt]


class Op(BaseModel):
    """Base of every operation: unknown keys are an error; values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    op: str  # each subclass narrows it to its own Literal name (the union's discriminator)

    def apply(self, x: Any, state: dict) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class ExpectImage(Op):
    """Check the input: ``HxWxC`` with C in ``channels`` and dtype in ``dtypes``.

    Put it first so that a wrong input fails with a clear message
    (``expected HxWx3 uint8 image, got shape (...) dtype ...``) before any work is done.
    """

    op: Literal["expect_image"] = "expect_image"
    channels: tuple[PosInt, ...] = (3,)
    dtypes: tuple[str, ...] = ("uint8",)
    allow_2d: bool = False

    def apply(self, x, state):
        return check_image(x, channels=self.channels, dtypes=self.dtypes, allow_2d=self.allow_2d)


class Resize(Op):
    """Resize to ``size = (height, width)`` without keeping the aspect ratio."""

    op: Literal["resize"] = "resize"
    size: Size
    interpolation: Literal["nearest", "linear", "area", "cubic", "lanczos"] = "linear"

    def apply(self, x, state):
        return _image.resize(x, self.size, self.interpolation)


class Letterbox(Op):
    """Keep-ratio resize + pad to ``size = (height, width)``; records the transform."""

    op: Literal["letterbox"] = "letterbox"
    size: Size
    pad_value: float = 114.0
    center: bool = False
    interpolation: Literal["nearest", "linear", "area", "cubic", "lanczos"] = "linear"

    def apply(self, x, state):
        out, t = _image.letterbox(x, self.size, self.pad_value, self.center, self.interpolation)
        state["transform"] = t
        return out


class Normalize(Op):
    """``(x * scale - mean) / std`` in float32, per channel (``channel_axis``)."""

    op: Literal["normalize"] = "normalize"
    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0
    scale: float = 1.0
    channel_axis: int = -1

    @model_validator(mode="after")
    def _std_nonzero(self):
        s = self.std if isinstance(self.std, tuple) else (self.std,)
        if any(v == 0 for v in s):
            raise ValueError("std must not contain zeros")
        return self

    def apply(self, x, state):
        return _image.normalize(x, self.mean, self.std, self.scale, self.channel_axis)


class ToLayout(Op):
    """HWC -> ``layout``. ``NCHW``/``NHWC`` add the batch axis (a later AddBatchDim is then
    a no-op)."""

    op: Literal["to_layout"] = "to_layout"
    layout: Literal["HWC", "CHW", "NHWC", "NCHW"] = "CHW"

    def apply(self, x, state):
        if self.layout.startswith("N"):
            state["batched"] = True
        return _image.to_layout(x, self.layout)


class ColorConvert(Op):
    op: Literal["color_convert"] = "color_convert"
    src: Literal["BGR", "RGB", "GRAY", "BGRA", "RGBA"] = "BGR"
    dst: Literal["BGR", "RGB", "GRAY", "BGRA", "RGBA"] = "RGB"

    def apply(self, x, state):
        return _image.color_convert(x, self.src, self.dst)


class Clahe(Op):
    op: Literal["clahe"] = "clahe"
    clip_limit: Annotated[float, Field(gt=0)] = 2.0
    tile_grid: Size = (8, 8)

    def apply(self, x, state):
        return _image.clahe(x, self.clip_limit, self.tile_grid)


class Window(Op):
    """DICOM linear VOI window (PS3.3 C.11.2.1.2.1)."""

    op: Literal["window"] = "window"
    center: float
    width: Annotated[float, Field(ge=1)]
    out: Literal["uint8", "float"] = "uint8"
    invert: bool = False

    def apply(self, x, state):
        return _medical.window(x, self.center, self.width, self.out, self.invert)


class RescaleSlopeIntercept(Op):
    op: Literal["rescale_slope_intercept"] = "rescale_slope_intercept"
    slope: float = 1.0
    intercept: float = 0.0

    def apply(self, x, state):
        return _medical.rescale_slope_intercept(x, self.slope, self.intercept)


class CastDtype(Op):
    op: Literal["cast_dtype"] = "cast_dtype"
    dtype: Literal["float32", "float16", "float64", "uint8", "int8", "uint16", "int16",
                   "int32", "int64"] = "float32"

    def apply(self, x, state):
        return _image.cast_dtype(x, self.dtype)


class AddBatchDim(Op):
    """Prepend a batch axis of 1, unless an earlier ``ToLayout("N...")`` already did."""

    op: Literal["add_batch_dim"] = "add_batch_dim"

    def apply(self, x, state):
        if state.get("batched"):
            return x
        state["batched"] = True
        return _image.add_batch_dim(x)


class Resample(Op):
    op: Literal["resample"] = "resample"
    sr_in: PosInt
    sr_out: PosInt

    def apply(self, x, state):
        return _audio.resample(x, self.sr_in, self.sr_out)


class LogMel(Op):
    """Log-mel spectrogram ``(n_mels, frames)`` (Whisper semantics by default)."""

    op: Literal["log_mel"] = "log_mel"
    sr: PosInt = 16000
    n_fft: PosInt = 400
    hop: PosInt = 160
    n_mels: PosInt = 80
    whisper: bool = True
    pad_to: PosInt | None = None

    def apply(self, x, state):
        return _audio.log_mel_spectrogram(x, self.sr, self.n_fft, self.hop, self.n_mels,
                                          self.whisper, None, self.pad_to)


AnyOp = Annotated[
    Union[ExpectImage, Resize, Letterbox, Normalize, ToLayout, ColorConvert, Clahe, Window,
          RescaleSlopeIntercept, CastDtype, AddBatchDim, Resample, LogMel],
    Field(discriminator="op"),
]


class PreprocessSpec(BaseModel):
    """An ordered list of operations; JSON round-trippable; ``build()`` -> Preprocessor."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ops: tuple[AnyOp, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _accept_json_text(cls, data: Any) -> Any:
        """``PreprocessSpec.model_validate(text)`` works with JSON text as well as a dict."""
        if isinstance(data, (str, bytes, bytearray)):
            return json.loads(data)
        return data

    def build(self) -> "Preprocessor":
        return Preprocessor(self)


class Preprocessor:
    """Runs a :class:`PreprocessSpec` on one input.

    ``last_transform`` is the :class:`~sdk.preprocess.LetterboxTransform` of the most recent
    call (``None`` if no Letterbox ran). Not meant to be shared between threads that each
    need their own ``last_transform``; build one per thread (building is cheap).
    Failures raise :class:`~sdk.errors.PreprocessError` naming the operation.
    """

    def __init__(self, spec: PreprocessSpec | dict | str | None = None):
        if spec is None:
            spec = PreprocessSpec()
        elif isinstance(spec, str):
            spec = PreprocessSpec.model_validate_json(spec)
        elif isinstance(spec, dict):
            spec = PreprocessSpec.model_validate(spec)
        elif not isinstance(spec, PreprocessSpec):
            raise TypeError(f"spec must be a PreprocessSpec, dict or JSON string, got {type(spec).__name__}")
        self.spec = spec
        self.last_transform: _image.LetterboxTransform | None = None

    @property
    def ops(self) -> tuple:
        return self.spec.ops

    def __call__(self, x: Any) -> Any:
        state: dict = {}
        for i, op in enumerate(self.spec.ops):
            try:
                x = op.apply(x, state)
            except PreprocessError as exc:
                raise PreprocessError(f"step {i} ({op.op}): {exc}") from exc
            except (cv2.error, ValueError, TypeError) as exc:
                shape = getattr(x, "shape", None)
                dtype = getattr(x, "dtype", None)
                raise PreprocessError(
                    f"step {i} ({op.op}) failed on input shape {shape} dtype {dtype}: {exc}"
                ) from exc
        self.last_transform = state.get("transform")
        return x

    def __repr__(self) -> str:
        return f"Preprocessor({[op.op for op in self.spec.ops]})"
