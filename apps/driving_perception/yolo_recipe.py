"""Training recipe on YOLO-format labels: a tiny one-head detector whose ONNX output is YOLOX's
raw layout, so :class:`detect.Detector` runs it through the ``yolox`` adapter unchanged.

Steps (torch, extra ``train``; fixed seed, one thread):

1. load ``DATA/images`` + ``DATA/labels`` (:mod:`yolo_data`), hold out ``val_fraction``;
2. letterbox every image to ``input_size`` (as the detector does at run time) and its boxes with it;
3. train :class:`TinyDetector` (stride-8 grid; each box is assigned to the cell holding its
   centre and that cell's neighbours; BCE on objectness and classes, L1 on the raw box);
4. export to ONNX (``images`` -> ``output`` [1, cells, 5 + classes]) and check it in onnxruntime;
5. measure F1 at IoU 0.5 (same class) on the held-out images through the real detector and
   save the bundle with ``extra["detector"]`` (adapter, input size, thresholds).

The recipe gives a small detector for simple scenes and a working pipeline; for real scenes
swap in a stronger network (a YOLOX/YOLOv8 export with its adapter) and keep the rest.
"""
from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sdk.detect import Detections, f1_score, match_counts

from .yolo_data import LabelledImage, load_yolo_folder

log = logging.getLogger("edgewise")
STRIDE = 8


class YoloRecipe(BaseModel):
    """Settings of one training run (the app's config file holds them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    labels: list[str] = Field(min_length=1, description="class names, in the label files' index order")
    input_size: tuple[int, int] = Field((128, 128), description="network input (height, width), multiples of 8")
    val_fraction: float = Field(0.2, gt=0, lt=1)
    epochs: int = Field(40, ge=1)
    width: int = Field(16, ge=4, description="channels of the first layer")
    lr: float = Field(1e-2, gt=0)
    batch_size: int = Field(8, ge=1)
    seed: int = 0
    score_threshold: float = Field(0.3, ge=0, le=1, description="detections below this score are dropped")
    nms_threshold: float = Field(0.45, gt=0, le=1)


def _net(num_classes: int, width: int):
    from sdk.errors import require

    nn = require("torch", "train", "training the detector").nn

    def cbr(cin, cout, stride):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    class TinyDetector(nn.Module):
        """BGR 0..255 (N, 3, H, W) -> raw YOLOX head (N, H/8 * W/8, 5 + C)."""

        def __init__(self):
            super().__init__()
            w = width
            self.body = nn.Sequential(cbr(3, w, 2), cbr(w, w, 1), cbr(w, 2 * w, 2), cbr(2 * w, 2 * w, 1),
                                      cbr(2 * w, 2 * w, 2), cbr(2 * w, 2 * w, 1))
            self.head = nn.Conv2d(2 * w, 5 + num_classes, 1)

        def forward(self, x):
            y = self.head(self.body(x / 255.0))
            return y.flatten(2).permute(0, 2, 1)

    return TinyDetector()


def _letterboxed(items: list[LabelledImage], size: tuple[int, int]):
    from sdk.preprocess import letterbox

    xs, boxes = [], []
    for it in items:
        img, t = letterbox(it.image, size, pad_value=114)
        xs.append(img.transpose(2, 0, 1).astype(np.float32))
        boxes.append((np.asarray(t.to_letterboxed(it.xyxy), np.float32).reshape(-1, 4), it.class_ids))
    return np.stack(xs), boxes


def _targets(boxes, size: tuple[int, int], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image and cell: objectness (N, cells), and (raw box 4 + one-hot C) at positive cells."""
    gh, gw = size[0] // STRIDE, size[1] // STRIDE
    obj = np.zeros((len(boxes), gh * gw), np.float32)
    tgt = np.zeros((len(boxes), gh * gw, 4 + num_classes), np.float32)
    for n, (xyxy, cls) in enumerate(boxes):
        for b, c in zip(xyxy, cls, strict=True):
            cx, cy = (b[0] + b[2]) / 2 / STRIDE, (b[1] + b[3]) / 2 / STRIDE
            bw, bh = max(b[2] - b[0], 1.0) / STRIDE, max(b[3] - b[1], 1.0) / STRIDE
            for gy in range(int(cy) - 1, int(cy) + 2):
                for gx in range(int(cx) - 1, int(cx) + 2):
                    if 0 <= gx < gw and 0 <= gy < gh:
                        k = gy * gw + gx
                        obj[n, k] = 1.0
                        tgt[n, k, :4] = (cx - gx, cy - gy, math.log(bw), math.log(bh))
                        tgt[n, k, 4:] = 0.0
                        tgt[n, k, 4 + int(c)] = 1.0
    return obj, tgt


def detector_spec(recipe: YoloRecipe) -> dict:
    """``extra["detector"]`` of the bundle: how :class:`detect.Detector` feeds and decodes it."""
    return {"adapter": "yolox", "adapter_options": {"strides": [STRIDE], "apply_sigmoid": True},
            "input_size": list(recipe.input_size), "pad_value": 114, "classes": None,
            "score_threshold": recipe.score_threshold, "nms_threshold": recipe.nms_threshold}


def _val_f1(onnx_path: Path, recipe: YoloRecipe, items: list[LabelledImage]) -> float:
    from .detect.detector import Detector, DetectorOptions

    tp = fp = fn = 0
    with Detector.from_model_path(onnx_path, DetectorOptions(**detector_spec(recipe))) as det:
        for it in items:
            a, b, c = match_counts(Detections(it.xyxy, np.ones(len(it.xyxy), np.float32), it.class_ids), det(it.image))
            tp, fp, fn = tp + a, fp + b, fn + c
    return f1_score(tp, fp, fn)


def train_bundle(data: str | Path, out: str | Path, recipe: YoloRecipe, *, name: str, progress: bool = False):
    """Train on ``data`` (YOLO format) and write the detector bundle ``out``; returns the Bundle."""
    from sdk.bundle import Manifest, ModelEntry, Provenance, save_bundle
    from sdk.compress import export_onnx
    from sdk.errors import require

    torch = require("torch", "train", "training the detector")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"bundle folder {out} exists and is not empty; give another --out or remove it")
    if any(s % STRIDE for s in recipe.input_size):
        raise ValueError(f"input_size must be multiples of {STRIDE}, got {list(recipe.input_size)}")
    items = load_yolo_folder(data, len(recipe.labels))
    if len(items) < 2:
        raise ValueError(f"{data}: at least 2 labelled images are needed (train and val), found {len(items)}")
    rng = np.random.default_rng(recipe.seed)
    order = rng.permutation(len(items))
    k = max(1, round(len(items) * recipe.val_fraction))
    val, train = [items[i] for i in order[:k]], [items[i] for i in order[k:]]
    x, boxes = _letterboxed(train, recipe.input_size)
    obj_t, box_t = _targets(boxes, recipe.input_size, len(recipe.labels))

    torch.manual_seed(recipe.seed)
    torch.set_num_threads(1)
    net = _net(len(recipe.labels), recipe.width)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=1e-4)
    X, O, T = torch.from_numpy(x), torch.from_numpy(obj_t), torch.from_numpy(box_t)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    gen = torch.Generator().manual_seed(recipe.seed)
    history = []
    for epoch in range(recipe.epochs):
        net.train()
        total = 0.0
        for idx in torch.randperm(len(X), generator=gen).split(recipe.batch_size):
            y = net(X[idx])
            pos = O[idx] > 0
            loss = bce(y[..., 4], O[idx], pos_weight=torch.tensor(4.0))
            if pos.any():
                loss = loss + torch.nn.functional.l1_loss(y[..., :4][pos], T[idx][..., :4][pos]) \
                    + bce(y[..., 5:][pos], T[idx][..., 4:][pos])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append({"epoch": epoch + 1, "loss": round(total / len(X), 5)})
        if progress and (epoch + 1) % 10 == 0:
            log.info("detector epoch %d loss %.4f", epoch + 1, total / len(X))
    net.eval()
    with tempfile.TemporaryDirectory(prefix="edgewise_yolo_recipe_") as work:
        onnx_path = export_onnx(net, x[:1], Path(work) / "model.onnx", input_names=["images"],
                                output_names=["output"])
        f1 = _val_f1(onnx_path, recipe, val)
        manifest = Manifest(
            name=name, version="0.1.0", task="detection", labels=list(recipe.labels),
            description=f"tiny detector of {', '.join(recipe.labels)} trained on {data}",
            models={"model": ModelEntry(file="model.onnx")},
            metrics={"val_f1_iou50": f1, "train_images": float(len(train)), "val_images": float(len(val))},
            provenance=Provenance(dataset=str(data), dataset_licence="(yours)", recipe="yolo_recipe.py",
                                  licence="(yours)"),
            extra={"detector": detector_spec(recipe), "training": {**recipe.model_dump(), "history": history}})
        bundle = save_bundle(out, manifest, {"model.onnx": onnx_path})
    log.info("bundle %s written to %s (val F1@0.5 %.3f)", name, out, f1)
    return bundle
