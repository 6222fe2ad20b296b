"""Object detector: letterbox -> ONNX model (sdk.runtime.Engine) -> sdk.detect.Decoder -> Detections.

The decoder is the SDK's (adapter by name, score threshold, class-aware NMS, cap); this
module adds the app's part: BGR frames in, boxes back in source-image pixels through the
letterbox's exact inverse (``LetterboxTransform.to_original``), only the road-user classes,
class names attached. Per-call timings of the three steps are kept in ``timings``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from pydantic import Field

from sdk.closing import Closing
from sdk.detect import DecodeOptions, Decoder, Detections
from sdk.errors import InferenceError, InputValidationError
from sdk.preprocess import letterbox
from sdk.runtime import Engine, EngineOptions

from ..detections import ROAD_USER_CLASSES, with_class_names


class DetectorOptions(DecodeOptions):
    """How to feed the model and filter its output; a bundle's ``extra["detector"]`` holds these
    (the decode fields of :class:`sdk.detect.DecodeOptions` plus the input size and padding)."""

    input_size: tuple[int, int] = Field((416, 416), description="network input (height, width)")
    pad_value: int = Field(114, ge=0, le=255, description="letterbox padding value")
    classes: tuple[int, ...] | None = Field(tuple(ROAD_USER_CLASSES), description="class ids kept; None keeps all")
    max_detections: int = Field(100, gt=0, description="cap on boxes per frame, best first")


class Detector(Closing):
    """Run a detection model on BGR frames. ``with Detector(...) as det: det(frame)``."""

    def __init__(self, engine: Engine, options: DetectorOptions | None = None, check_finite: bool = True):
        self.engine = engine
        self.options = options or DetectorOptions()
        self.decoder = Decoder(self.options.input_size, self.options)
        self.adapter = self.decoder.adapter
        self.check_finite = check_finite
        self.input_name = engine.inputs[0].name
        self.timings: dict[str, float] = {"pre": 0.0, "model": 0.0, "post": 0.0}

    @classmethod
    def from_model_path(cls, path: str | Path, options: DetectorOptions | None = None,
                        engine_options: EngineOptions | None = None) -> "Detector":
        return cls(Engine(str(path), engine_options or EngineOptions()), options)

    @classmethod
    def from_bundle(cls, bundle, engine_options: EngineOptions | None = None, **overrides) -> "Detector":
        """Build from a loaded ``sdk.bundle.Bundle``; its ``extra["detector"]`` picks the adapter."""
        spec = dict((bundle.manifest.extra or {}).get("detector", {}))
        spec.update(overrides)
        return cls(bundle.engine("model", engine_options or EngineOptions()), DetectorOptions(**spec))

    # -- the three steps --------------------------------------------------------------
    def preprocess(self, image: np.ndarray):
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputValidationError(
                "expected a BGR uint8 image of shape (H, W, 3), got "
                f"{type(image).__name__} {getattr(image, 'shape', None)} {getattr(image, 'dtype', None)}")
        boxed, transform = letterbox(image, tuple(self.options.input_size), pad_value=self.options.pad_value)
        blob = cv2.dnn.blobFromImage(boxed)  # NCHW float32, BGR 0..255, no scaling
        return blob, transform

    def infer(self, blob: np.ndarray) -> list[np.ndarray]:
        outputs = self.engine.run_list({self.input_name: blob})
        if self.check_finite:
            for out in outputs:
                if np.issubdtype(out.dtype, np.floating) and not np.isfinite(out).all():
                    raise InferenceError(f"model output has {int((~np.isfinite(out)).sum())} "
                                         f"non-finite values (NaN/Inf) out of {out.size}")
        return outputs

    def postprocess(self, outputs: Sequence[np.ndarray], transform) -> Detections:
        dets = self.decoder(outputs)
        if len(dets) == 0:
            return dets
        dets = dets.map_xyxy(transform.to_original)
        wh = dets.xyxy[:, 2:] - dets.xyxy[:, :2]
        return with_class_names(dets[(wh > 1.0).all(axis=1)])  # boxes entirely in the padding collapse when clipped

    def __call__(self, image: np.ndarray) -> Detections:
        t0 = time.perf_counter()
        blob, transform = self.preprocess(image)
        t1 = time.perf_counter()
        outputs = self.infer(blob)
        t2 = time.perf_counter()
        dets = self.postprocess(outputs, transform)
        t3 = time.perf_counter()
        self.timings = {"pre": t1 - t0, "model": t2 - t1, "post": t3 - t2}
        return dets

    detect = __call__

    def close(self) -> None:
        self.engine.close()
