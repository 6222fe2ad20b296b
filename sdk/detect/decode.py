"""Raw outputs -> final detections: adapter, score threshold, NMS, best first, capped.

``Decoder(input_size, DecodeOptions(...))`` is a callable ``outputs -> Detections`` in
network-input pixels; ``outputs`` is what a session returns (a list of arrays, a name ->
array mapping, or one array). :class:`YoloxDecoder` is the YOLOX preset the compression
evaluators use by default.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sdk.detect.adapters import Adapter, get_adapter
from sdk.detect.detections import Detections
from sdk.detect.nms import nms

__all__ = ["DecodeOptions", "Decoder", "YoloxDecoder", "as_output_list"]


class DecodeOptions(BaseModel):
    """How to turn a model's raw outputs into detections (a bundle's ``extra["detector"]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    adapter: str = Field("yolox", description="output adapter name (sdk.detect.ADAPTERS)")
    adapter_options: dict[str, Any] = Field(default_factory=dict, description="options of the adapter")
    score_threshold: float = Field(0.3, ge=0.0, le=1.0, description="minimum score kept (inclusive)")
    nms_threshold: float = Field(0.45, gt=0.0, le=1.0, description="IoU above which NMS suppresses")
    classes: tuple[int, ...] | None = Field(None, description="class ids kept; None keeps all")
    class_agnostic_nms: bool = Field(False, description="one NMS over all classes instead of per class")
    max_detections: int = Field(300, gt=0, description="cap on boxes per image, best first")


def as_output_list(outputs: Mapping[str, np.ndarray] | Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """A session's outputs as a list: mapping values in order, a sequence as is, one array alone."""
    if isinstance(outputs, Mapping):
        return list(outputs.values())
    if isinstance(outputs, np.ndarray):
        return [outputs]
    return list(outputs)


class Decoder:
    """``decoder(outputs) -> Detections`` (input pixels) for a fixed network input size."""

    def __init__(self, input_size: tuple[int, int] | Sequence[int], options: DecodeOptions | None = None,
                 adapter: Adapter | None = None):
        if len(input_size) != 2 or not all(int(v) > 0 for v in input_size):
            raise ValueError(f"input_size must be (height, width) of positive ints, got {tuple(input_size)}")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.options = options or DecodeOptions()
        self.adapter = adapter or get_adapter(self.options.adapter, self.options.adapter_options)

    def candidates(self, outputs: Any) -> Detections:
        """The adapter's boxes above the score threshold, before NMS."""
        o = self.options
        return self.adapter.decode(as_output_list(outputs), self.input_size, o.classes, o.score_threshold)

    def __call__(self, outputs: Any) -> Detections:
        o = self.options
        return nms(self.candidates(outputs), o.nms_threshold, class_agnostic=o.class_agnostic_nms,
                   max_detections=o.max_detections)


class YoloxDecoder(Decoder):
    """YOLOX exports (``decode_in_inference=False``, sigmoid applied in the graph): all classes,
    per-class NMS, at most 300 boxes."""

    def __init__(self, input_size: tuple[int, int] | Sequence[int] = (416, 416), strides: Sequence[int] = (8, 16, 32),
                 score_thr: float = 0.3, nms_thr: float = 0.45):
        super().__init__(input_size, DecodeOptions(adapter="yolox", adapter_options={"strides": tuple(strides)},
                                                   score_threshold=score_thr, nms_threshold=nms_thr))
        self.strides = tuple(int(s) for s in strides)
        self.score_thr, self.nms_thr = float(score_thr), float(nms_thr)
