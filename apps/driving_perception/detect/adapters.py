"""Output adapters: turn a detector's raw ONNX outputs into candidate boxes.

Every adapter returns boxes in the *network input* pixel frame (the letterboxed image),
before NMS, one best class per candidate:  ``(xyxy (N, 4), scores (N,), class_ids (N,))``.
The bundle manifest picks one with ``extra["detector"]["adapter"]`` (+ its options).

=========  ===========================================  =================================
name       output layout                                 score
=========  ===========================================  =================================
yolox      [1, A, 5+C] raw heads, A = sum(H/s * W/s)     obj * cls (sigmoid unless applied)
yolov5     [1, N, 5+C] cx, cy, w, h in input pixels      obj * cls
yolov8     [1, 4+C, N] cx, cy, w, h in input pixels      cls
boxes      boxes [1, N, 4] + scores [1, N, C]            scores (xyxy or cxcywh, px or 0..1)
=========  ===========================================  =================================
"""
from __future__ import annotations

from typing import ClassVar, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from sdk.errors import InferenceError

Decoded = tuple[np.ndarray, np.ndarray, np.ndarray]
ADAPTERS: dict[str, type["Adapter"]] = {}


def register_adapter(cls: type["Adapter"]) -> type["Adapter"]:
    ADAPTERS[cls.name] = cls
    return cls


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half = b[:, 2:4] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def _empty() -> Decoded:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)


def _best_class(scores: np.ndarray, classes: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Best (score, COCO id) per row, looking only at ``classes`` when given."""
    if classes is not None:
        cols = np.asarray(classes, np.int64)
        sub = scores[:, cols]
        arg = sub.argmax(axis=1)
        return sub[np.arange(len(sub)), arg], cols[arg]
    arg = scores.argmax(axis=1)
    return scores[np.arange(len(scores)), arg], arg.astype(np.int64)


class Adapter(BaseModel):
    """Base: a validated, serialisable decoder config. Subclasses implement ``decode``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]

    def decode(self, outputs: Sequence[np.ndarray], input_hw: tuple[int, int],
               classes: Sequence[int] | None = None, min_score: float = 0.0) -> Decoded:
        raise NotImplementedError

    def _single(self, outputs: Sequence[np.ndarray], ndim: int = 3) -> np.ndarray:
        if len(outputs) < 1:
            raise InferenceError(f"{self.name} adapter expected 1 output, got none")
        out = np.asarray(outputs[0])
        if out.ndim == ndim and out.shape[0] == 1:
            out = out[0]
        if out.ndim != 2:
            raise InferenceError(f"{self.name} adapter expected an output of shape [1, N, K], "
                                 f"got {list(np.shape(outputs[0]))}")
        return out


def _finish(boxes: np.ndarray, obj: np.ndarray | None, cls_scores: np.ndarray,
            classes: Sequence[int] | None, min_score: float) -> Decoded:
    if obj is not None:
        keep = obj >= min_score  # obj * cls <= obj: a cheap prefilter
        boxes, obj, cls_scores = boxes[keep], obj[keep], cls_scores[keep]
        score, cid = _best_class(cls_scores, classes)
        score = score * obj
    else:
        score, cid = _best_class(cls_scores, classes)
    keep = score >= min_score
    return (boxes[keep].astype(np.float32), score[keep].astype(np.float32), cid[keep])


@register_adapter
class YoloxAdapter(Adapter):
    """YOLOX raw heads: ``xy = (raw_xy + grid) * stride``, ``wh = exp(raw_wh) * stride``."""

    name: ClassVar[str] = "yolox"
    strides: tuple[int, ...] = Field((8, 16, 32), description="head strides, in output order")
    apply_sigmoid: bool = Field(False, description="the export left obj/cls as logits")
    _grids: dict = PrivateAttr(default_factory=dict)

    def _grid(self, input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
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

    def decode(self, outputs, input_hw, classes=None, min_score=0.0) -> Decoded:
        out = self._single(outputs)
        grid, stride = self._grid(tuple(input_hw))
        if out.shape[0] != len(grid) or out.shape[1] < 6:
            raise InferenceError(
                f"yolox adapter expected [1, {len(grid)}, 5+C] for input {tuple(input_hw)} and strides "
                f"{self.strides}, got {list(np.shape(outputs[0]))}")
        obj = out[:, 4]
        cls_scores = out[:, 5:]
        if self.apply_sigmoid:
            obj, cls_scores = _sigmoid(obj), _sigmoid(cls_scores)
        keep = obj >= min_score
        if not keep.any():
            return _empty()
        raw, g, s = out[keep], grid[keep], stride[keep]
        xy = (raw[:, :2] + g) * s
        wh = np.exp(np.minimum(raw[:, 2:4], 20.0)) * s
        boxes = _cxcywh_to_xyxy(np.concatenate([xy, wh], axis=1))
        return _finish(boxes, obj[keep], cls_scores[keep], classes, min_score)


@register_adapter
class Yolov5Adapter(Adapter):
    """YOLOv5/YOLOv7-style ``[1, N, 5+C]``: cx, cy, w, h (input px), obj, class scores."""

    name: ClassVar[str] = "yolov5"

    def decode(self, outputs, input_hw, classes=None, min_score=0.0) -> Decoded:
        out = self._single(outputs)
        if out.shape[1] < 6:
            raise InferenceError(f"yolov5 adapter expected [1, N, 5+C], got {list(np.shape(outputs[0]))}")
        return _finish(_cxcywh_to_xyxy(out[:, :4]), out[:, 4], out[:, 5:], classes, min_score)


@register_adapter
class Yolov8Adapter(Adapter):
    """YOLOv8/YOLO11-style ``[1, 4+C, N]``: cx, cy, w, h (input px), class scores; no objectness."""

    name: ClassVar[str] = "yolov8"

    def decode(self, outputs, input_hw, classes=None, min_score=0.0) -> Decoded:
        out = self._single(outputs)
        if out.shape[0] < 5:
            raise InferenceError(f"yolov8 adapter expected [1, 4+C, N], got {list(np.shape(outputs[0]))}")
        out = out.T
        return _finish(_cxcywh_to_xyxy(out[:, :4]), None, out[:, 4:], classes, min_score)


@register_adapter
class BoxesScoresAdapter(Adapter):
    """Two outputs: boxes ``[1, N, 4]`` and per-class scores ``[1, N, C]`` (or ``[1, N]`` + labels)."""

    name: ClassVar[str] = "boxes"
    box_format: Literal["xyxy", "cxcywh"] = Field("xyxy", description="layout of the 4 box numbers")
    normalized: bool = Field(False, description="boxes are 0..1 fractions of the input size")
    boxes_output: int = Field(0, description="index of the boxes output")
    scores_output: int = Field(1, description="index of the scores output")

    def decode(self, outputs, input_hw, classes=None, min_score=0.0) -> Decoded:
        need = max(self.boxes_output, self.scores_output) + 1
        if len(outputs) < need:
            raise InferenceError(f"boxes adapter expected at least {need} outputs, got {len(outputs)}")
        boxes = np.asarray(outputs[self.boxes_output], np.float32).reshape(-1, 4)
        scores = np.asarray(outputs[self.scores_output], np.float32)
        if scores.ndim == 3:
            scores = scores[0]
        if scores.ndim == 1 or (scores.ndim == 2 and scores.shape[0] == 1 and len(boxes) != 1):
            # one score per box: class ids come from a third output, if there is one
            scores = scores.reshape(-1)
            labels = (np.asarray(outputs[2]).reshape(-1).astype(np.int64) if len(outputs) > 2
                      else np.zeros(len(scores), np.int64))
            full = np.zeros((len(scores), int(labels.max(initial=0)) + 1), np.float32)
            full[np.arange(len(scores)), labels] = scores
            scores = full
        if scores.shape[0] != len(boxes):
            raise InferenceError(f"boxes adapter: {len(boxes)} boxes but scores for {scores.shape[0]}")
        if classes is not None and scores.shape[1] <= max(classes):
            classes = [c for c in classes if c < scores.shape[1]]
            if not classes:
                return _empty()
        if self.box_format == "cxcywh":
            boxes = _cxcywh_to_xyxy(boxes)
        if self.normalized:
            boxes = boxes * np.array([input_hw[1], input_hw[0], input_hw[1], input_hw[0]], np.float32)
        return _finish(boxes, None, scores, classes, min_score)


def make_adapter(name: str = "yolox", options: dict | None = None) -> Adapter:
    """Build an adapter by name (as in a manifest's ``extra["detector"]``) with its options."""
    if name not in ADAPTERS:
        raise ValueError(f"unknown detector adapter {name!r}; expected one of {sorted(ADAPTERS)}")
    return ADAPTERS[name].model_validate(dict(options or {}))
