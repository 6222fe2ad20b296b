"""Output adapters: a detector's raw ONNX outputs -> candidate :class:`Detections`.

Every adapter returns boxes in the *network input* pixel frame (the letterboxed image),
before NMS, one best class per candidate, only rows with score >= ``min_score``. A bundle
manifest picks one by name (``extra["detector"]["adapter"]`` + its options);
:func:`get_adapter` builds it, :func:`register_adapter` adds a new layout.

=========  ===========================================  =================================
name       output layout                                 score
=========  ===========================================  =================================
yolox      [1, A, 5+C] raw heads, A = sum(H/s * W/s)     obj * cls (sigmoid unless applied)
yolov5     [1, N, 5+C] cx, cy, w, h in input pixels      obj * cls
yolov8     [1, 4+C, N] cx, cy, w, h in input pixels      cls
boxes      boxes [1, N, 4] + scores [1, N, C]            scores (xyxy or cxcywh, px or 0..1)
=========  ===========================================  =================================

``classes`` (when given) restricts the arg-max to those class ids: a box is labelled with
its best class *among them*.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from sdk.detect.boxes import cxcywh_to_xyxy
from sdk.detect.detections import Detections
from sdk.errors import OutputLayoutError

__all__ = ["Adapter", "ADAPTERS", "register_adapter", "get_adapter", "YoloxAdapter", "Yolov5Adapter",
           "Yolov8Adapter", "BoxesScoresAdapter"]

ADAPTERS: dict[str, type["Adapter"]] = {}


def register_adapter(cls: type["Adapter"]) -> type["Adapter"]:
    """Class decorator: make an :class:`Adapter` subclass available by its ``name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"an adapter class needs a non-empty string `name`, got {name!r} on {cls.__name__}")
    ADAPTERS[name] = cls
    return cls


def get_adapter(name: str = "yolox", options: dict[str, Any] | None = None) -> "Adapter":
    """The adapter registered as ``name``, configured by ``options`` (validated; a misspelt key
    is an error)."""
    if name not in ADAPTERS:
        raise ValueError(f"unknown detector adapter {name!r}; expected one of {sorted(ADAPTERS)}")
    return ADAPTERS[name].model_validate(dict(options or {}))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _best_class(scores: np.ndarray, classes: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Best (score, class id) per row, looking only at ``classes`` when given."""
    if classes is not None:
        cols = np.asarray(classes, np.int64)
        sub = scores[:, cols]
        arg = sub.argmax(axis=1)
        return sub[np.arange(len(sub)), arg], cols[arg]
    arg = scores.argmax(axis=1)
    return scores[np.arange(len(scores)), arg], arg.astype(np.int64)


def _finish(boxes: np.ndarray, obj: np.ndarray | None, cls_scores: np.ndarray,
            classes: Sequence[int] | None, min_score: float) -> Detections:
    if obj is not None:
        keep = obj >= min_score  # obj * cls <= obj: a cheap prefilter
        boxes, obj, cls_scores = boxes[keep], obj[keep], cls_scores[keep]
    if len(boxes) == 0:
        return Detections.empty()
    score, cid = _best_class(cls_scores, classes)
    if obj is not None:
        score = score * obj
    keep = score >= min_score
    return Detections(boxes[keep].astype(np.float32), score[keep].astype(np.float32), cid[keep])


class Adapter(BaseModel):
    """Base: a validated, serialisable decoder config. Subclasses set ``name``, implement
    ``decode`` and register with ``@register_adapter``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]

    def decode(self, outputs: Sequence[np.ndarray], input_hw: tuple[int, int],
               classes: Sequence[int] | None = None, min_score: float = 0.0) -> Detections:
        raise NotImplementedError

    def _single(self, outputs: Sequence[np.ndarray], layout: str, axis: int = 1, at_least: int = 1) -> np.ndarray:
        """The first output as a 2-D array (batch of 1 dropped) with ``at_least`` entries on ``axis``."""
        if len(outputs) < 1:
            raise OutputLayoutError(f"{self.name} adapter expected 1 output {layout}, got none")
        out = np.asarray(outputs[0])
        if out.ndim == 3 and out.shape[0] == 1:
            out = out[0]
        if out.ndim != 2 or out.shape[axis] < at_least:
            raise OutputLayoutError(f"{self.name} adapter expected {layout}, got {list(np.shape(outputs[0]))}")
        return out


@register_adapter
class YoloxAdapter(Adapter):
    """YOLOX raw heads (``decode_in_inference=False``): ``xy = (raw_xy + grid) * stride``,
    ``wh = exp(raw_wh) * stride``, score = objectness x best class score."""

    name: ClassVar[str] = "yolox"
    strides: tuple[int, ...] = Field((8, 16, 32), description="head strides, in output order")
    apply_sigmoid: bool = Field(False, description="the export left obj/cls as logits")
    _grids: dict = PrivateAttr(default_factory=dict)

    def grid(self, input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(anchor cell x, y (A, 2), anchor stride (A, 1)) for an input size, cached."""
        cache = self._grids
        if input_hw not in cache:
            grids, strides = [], []
            for s in self.strides:
                hs, ws = input_hw[0] // s, input_hw[1] // s
                yv, xv = np.meshgrid(np.arange(hs), np.arange(ws), indexing="ij")
                grids.append(np.stack([xv, yv], axis=2).reshape(-1, 2))
                strides.append(np.full((hs * ws, 1), s))
            cache[input_hw] = (np.concatenate(grids).astype(np.float32),
                               np.concatenate(strides).astype(np.float32))
        return cache[input_hw]

    def decode(self, outputs, input_hw, classes=None, min_score=0.0) -> Detections:
        input_hw = (int(input_hw[0]), int(input_hw[1]))
        grid, stride = self.grid(input_hw)
        out = self._single(outputs, f"[1, {len(grid)}, 5+C]")
        if out.shape[0] != len(grid) or out.shape[1] < 6:
            raise OutputLayoutError(
                f"yolox adapter expected [1, {len(grid)}, 5+C] ({len(grid)} anchors for input {input_hw} and "
                f"strides {self.strides}), got {list(np.shape(outputs[0]))}")
        out = out.astype(np.float32, copy=False)
        obj, cls_scores = out[:, 4], out[:, 5:]
        if self.apply_sigmoid:
            obj, cls_scores = _sigmoid(obj), _sigmoid(cls_scores)
        keep = obj >= min_score
        if not keep.any():
            return Detections.empty()
        raw, g, s = out[keep], grid[keep], stride[keep]
        xy = (raw[:, :2] + g) * s
        wh = np.exp(np.minimum(raw[:, 2:4], 20.0)) * s
        boxes = cxcywh_to_xyxy(np.concatenate([xy, wh], axis=1))
        return _finish(boxes, obj[keep], cls_scores[keep], classes, min_score)


@register_adapter
class Yolov5Adapter(Adapter):
    """YOLOv5/YOLOv7-style ``[1, N, 5+C]``: cx, cy, w, h (input px), obj, class scores."""

    name: ClassVar[str] = "yolov5"

    def decode(self, outputs, input_hw, classes=None, min_score=0.0) -> Detections:
        out = self._single(outputs, "[1, N, 5+C]", axis=1, at_least=6)
        return _finish(cxcywh_to_xyxy(out[:, :4]), out[:, 4], out[:, 5:], classes, min_score)


@register_adapter
class Yolov8Adapter(Adapter):
    """YOLOv8/YOLO11-style ``[1, 4+C, N]``: cx, cy, w, h (input px), class scores; no objectness."""

    name: ClassVar[str] = "yolov8"

    def decode(self, outputs, input_hw, classes=None, min_score=0.0) -> Detections:
        out = self._single(outputs, "[1, 4+C, N]", axis=0, at_least=5).T
        return _finish(cxcywh_to_xyxy(out[:, :4]), None, out[:, 4:], classes, min_score)


@register_adapter
class BoxesScoresAdapter(Adapter):
    """Two outputs: boxes ``[1, N, 4]`` and per-class scores ``[1, N, C]`` (or ``[1, N]`` plus
    an optional third output of class ids)."""

    name: ClassVar[str] = "boxes"
    box_format: Literal["xyxy", "cxcywh"] = Field("xyxy", description="layout of the 4 box numbers")
    normalized: bool = Field(False, description="boxes are 0..1 fractions of the input size")
    boxes_output: int = Field(0, ge=0, description="index of the boxes output")
    scores_output: int = Field(1, ge=0, description="index of the scores output")

    def decode(self, outputs, input_hw, classes=None, min_score=0.0) -> Detections:
        need = max(self.boxes_output, self.scores_output) + 1
        if len(outputs) < need:
            raise OutputLayoutError(f"boxes adapter expected at least {need} outputs, got {len(outputs)}")
        boxes = np.asarray(outputs[self.boxes_output], np.float32).reshape(-1, 4)
        scores = np.asarray(outputs[self.scores_output], np.float32)
        if scores.ndim == 3:
            scores = scores[0]
        if scores.ndim == 1 or (scores.ndim == 2 and scores.shape[0] == 1 and (len(boxes) != 1 or len(outputs) > 2)):
            # one score per box ([1, 1] with one box and a labels output too): class ids come
            # from a third output, if there is one
            scores = scores.reshape(-1)
            labels = (np.asarray(outputs[2]).reshape(-1).astype(np.int64) if len(outputs) > 2
                      else np.zeros(len(scores), np.int64))
            if len(labels) != len(scores):
                raise OutputLayoutError(f"boxes adapter: {len(scores)} scores but {len(labels)} class ids")
            full = np.zeros((len(scores), int(labels.max(initial=0)) + 1), np.float32)
            full[np.arange(len(scores)), labels] = scores
            scores = full
        if scores.shape[0] != len(boxes):
            raise OutputLayoutError(f"boxes adapter: {len(boxes)} boxes but scores for {scores.shape[0]}")
        if classes is not None and scores.shape[1] <= max(classes, default=-1):
            classes = [c for c in classes if c < scores.shape[1]]
            if not classes:
                return Detections.empty()
        if self.box_format == "cxcywh":
            boxes = cxcywh_to_xyxy(boxes)
        if self.normalized:
            boxes = boxes * np.array([input_hw[1], input_hw[0], input_hw[1], input_hw[0]], np.float32)
        return _finish(boxes, None, scores, classes, min_score)
