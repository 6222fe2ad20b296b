"""Evaluators: ``evaluator(model_path) -> float``, higher is better, with a ``.name``.

* :class:`Top1Accuracy` / :class:`AUC`: labelled classifiers over ``(X, y)``.
* :class:`DetectionAgreement`: F1 at IoU 0.5 of a candidate's detections against the
  reference (FP32) model's (``sdk.detect.detection_f1``: same class, greedy matching);
  ``decode_fn`` turns raw outputs into :class:`sdk.detect.Detections` (see ``YoloxDecoder``).
* :class:`OutputFidelity`: label-free agreement with the reference model's outputs,
  cosine similarity (1.0 = identical) or the negated max absolute error (0.0 = identical).
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from sdk.compress.calibration import UNNAMED, CalibrationData
from sdk.detect import Detections, YoloxDecoder, detection_f1
from sdk.errors import InferenceError, ModelLoadError

logger = logging.getLogger("edgewise")

__all__ = ["Evaluator", "Top1Accuracy", "AUC", "DetectionAgreement", "FrameDetectionAgreement", "OutputFidelity",
           "YoloxDecoder",
           "Detections", "detection_f1", "open_session", "roc_auc"]


def open_session(model_path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session; ModelLoadError naming the file when it is refused."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelLoadError(f"{Path(model_path).name}: onnxruntime could not load the model ({exc})") from exc


def _run(sess: Any, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    try:
        return sess.run(None, dict(feeds))
    except Exception as exc:
        raise InferenceError(f"evaluation run failed: {exc}") from exc


def _named(sess: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if UNNAMED in feeds:
        names = [i.name for i in sess.get_inputs()]
        if len(names) != 1:
            raise ValueError(f"unnamed inputs need a single-input model; inputs are {names}")
        return {names[0]: feeds[UNNAMED]}
    return dict(feeds)


class Evaluator(ABC):
    """Base class: subclasses set ``name`` and implement ``evaluate``."""

    name: str = "metric"

    @abstractmethod
    def evaluate(self, model_path: str | Path) -> float:
        ...

    def resolution(self) -> float | None:
        """How far one sample (one image, one detection) that flips can move the metric;
        None when it has no such step (averaged fidelity). :func:`optimize` refuses an
        evaluation whose step is larger than half the budget: it could not tell a candidate
        within the budget from one outside it."""
        return None

    def size_text(self) -> str:
        """What the evaluation holds, for messages ("46 frames, 127 detections")."""
        return ""

    def __call__(self, model_path: str | Path) -> float:
        return float(self.evaluate(model_path))


class _Classifier(Evaluator):
    def __init__(self, X: np.ndarray, y: np.ndarray, batch_size: int = 64, output_index: int = 0):
        X, y = np.asarray(X), np.asarray(y).reshape(-1)
        if len(X) != len(y):
            raise ValueError(f"X and y need the same length, got {len(X)} and {len(y)}")
        if len(X) == 0:
            raise ValueError("an evaluator needs at least one sample, got 0")
        self.X, self.y, self.batch_size, self.output_index = X, y, int(batch_size), output_index

    def scores(self, model_path: str | Path) -> np.ndarray:
        sess = open_session(model_path)
        inp = sess.get_inputs()[0]
        fixed = inp.shape[0] if inp.shape and isinstance(inp.shape[0], int) else None
        bs = fixed or self.batch_size
        dtype = np.float16 if "float16" in inp.type else np.float32
        outs = []
        for i in range(0, len(self.X), bs):
            xb = self.X[i:i + bs].astype(dtype, copy=False)
            if fixed and len(xb) < fixed:  # pad the last batch of a fixed-batch model
                xb = np.concatenate([xb, np.repeat(xb[-1:], fixed - len(xb), 0)])
            out = _run(sess, {inp.name: xb})[self.output_index]
            outs.append(np.asarray(out, np.float32).reshape(len(xb), -1)[:len(self.X[i:i + bs])])
        return np.concatenate(outs)


class Top1Accuracy(_Classifier):
    """Fraction of samples whose arg-max output equals the label."""

    name = "top1"

    def evaluate(self, model_path: str | Path) -> float:
        return float((self.scores(model_path).argmax(1) == self.y).mean())

    def resolution(self) -> float | None:
        return 1.0 / len(self.y)

    def size_text(self) -> str:
        return f"{len(self.y)} samples"


class AUC(_Classifier):
    """Area under the ROC curve of the positive-class score (binary labels 0/1)."""

    name = "auc"

    def __init__(self, X: np.ndarray, y: np.ndarray, batch_size: int = 64, positive_index: int = 1,
                 output_index: int = 0):
        super().__init__(X, y, batch_size, output_index)
        if set(np.unique(self.y)) - {0, 1}:
            raise ValueError(f"AUC needs binary labels 0/1, got {np.unique(self.y)[:10]}")
        self.positive_index = positive_index

    def evaluate(self, model_path: str | Path) -> float:
        s = self.scores(model_path)
        if s.shape[1] == 1:
            score = s[:, 0]
        else:  # softmax probability of the positive class (monotonic in the logit margin)
            z = s - s.max(1, keepdims=True)
            p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
            score = p[:, self.positive_index]
        return roc_auc(self.y, score)

    def resolution(self) -> float | None:
        # one positive passing one negative moves the AUC by 1 / (n_pos * n_neg); a sample
        # that moves across the whole other class moves it by 1 / n of its own class
        n_pos, n_neg = int((self.y == 1).sum()), int((self.y == 0).sum())
        return 1.0 / max(1, min(n_pos, n_neg))

    def size_text(self) -> str:
        return f"{int((self.y == 1).sum())} positive and {int((self.y == 0).sum())} negative samples"


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUC with tied scores counted half."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes, got {n_pos} positives and {n_neg} negatives")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _feeds_list(feeds: Any) -> list[dict[str, np.ndarray]]:
    if isinstance(feeds, CalibrationData):
        return feeds.materialize()
    out = []
    for f in feeds:
        out.append(dict(f) if isinstance(f, Mapping) else {UNNAMED: np.asarray(f)})
    if not out:
        raise ValueError("an evaluator needs at least one input, got 0")
    return out


# An output whose reference values are all smaller than this is not scored by OutputFidelity's
# cosine: onnxruntime's vectorised kernels (Sigmoid, seen here) have absolute errors of ~1e-7 near 0
SILENT_OUTPUT = 1e-6


class OutputFidelity(Evaluator):
    """Agreement of every output with the reference model's on the same feeds (no labels).

    ``cosine``: mean over feeds of the lowest per-output cosine similarity (1.0 = identical).
    An output whose reference values all lie below :data:`SILENT_OUTPUT` in magnitude is not
    scored while the candidate's stays quiet too (below 1% of the largest reference value of
    that output over all feeds): there the cosine measures the kernels' rounding, not the model
    (a text detector on a frame without text: probabilities ~3e-8 that onnxruntime's Sigmoid
    computes to +-1e-7, so an exact rewrite scored 0.52). A candidate that speaks where the
    reference is silent scores 0 there. A feed with nothing scored is left out of the mean; when
    every reference output is silent, ``ValueError`` says the data gives nothing to compare.
    ``max_abs``: minus the largest absolute difference over all outputs and feeds (0.0 = identical).
    """

    def __init__(self, reference_model: str | Path, feeds: Any, metric: Literal["cosine", "max_abs"] = "cosine",
                 output_names: Sequence[str] | None = None):
        if metric not in ("cosine", "max_abs"):
            raise ValueError(f"metric must be 'cosine' or 'max_abs', got {metric!r}")
        self.metric = metric
        self.name = "fidelity_cosine" if metric == "cosine" else "neg_max_abs_error"
        self.feeds = _feeds_list(feeds)
        self.output_names = list(output_names) if output_names else None
        self.reference = self._outputs(reference_model)
        self.scored = [[bool(a.size) and float(np.abs(a).max()) >= SILENT_OUTPUT for a in r] for r in self.reference]
        self.silent = sum(not any(r) for r in self.scored)
        n_out = len(self.reference[0]) if self.reference else 0
        self.quiet = [max(SILENT_OUTPUT, 0.01 * max((float(np.abs(r[j]).max()) for r in self.reference
                                                      if r[j].size), default=0.0)) for j in range(n_out)]
        if metric == "cosine" and self.silent == len(self.reference):
            raise ValueError(f"the reference model's outputs stay below {SILENT_OUTPUT:g} on all "
                             f"{len(self.reference)} samples: nothing to compare (the cosine would measure rounding "
                             "noise); give data the model responds to (a detector: frames with the objects it finds)")

    def _outputs(self, model_path: str | Path) -> list[list[np.ndarray]]:
        sess = open_session(model_path)
        names = [o.name for o in sess.get_outputs()]
        idx = [names.index(n) for n in self.output_names] if self.output_names else list(range(len(names)))
        res = []
        for f in self.feeds:
            outs = _run(sess, _named(sess, f))
            res.append([np.asarray(outs[i], np.float64).reshape(-1) for i in idx])
        return res

    def size_text(self) -> str:
        if self.metric == "cosine" and self.silent:
            return (f"{len(self.feeds)} samples, {self.silent} not scored (reference outputs below "
                    f"{SILENT_OUTPUT:g})")
        return f"{len(self.feeds)} samples"

    def evaluate(self, model_path: str | Path) -> float:
        cand = self._outputs(model_path)
        if self.metric == "max_abs":
            return -max(float(np.abs(a - b).max()) if a.size else 0.0
                        for ra, rb in zip(self.reference, cand, strict=True) for a, b in zip(ra, rb, strict=True))
        sims = []
        for ra, rb, keep in zip(self.reference, cand, self.scored, strict=True):
            per = []
            for a, b, k, quiet in zip(ra, rb, keep, self.quiet, strict=True):
                if not k:
                    if b.size and float(np.abs(b).max()) > quiet:
                        per.append(0.0)      # speaks where the reference is silent
                    continue
                nb = np.linalg.norm(b)
                per.append(0.0 if nb == 0 else float(a @ b / (np.linalg.norm(a) * nb)))
            if per:
                sims.append(min(per))
        return float(np.mean(sims))


def detection_resolution(reference: Sequence[Detections]) -> float:
    """F1 lost when one of ``n`` matched reference boxes is missed and replaced by a false one:
    ``1 - 2(n-1) / (2(n-1) + 2) = 1/n`` (1.0 with no reference boxes: nothing to resolve)."""
    n = sum(len(d) for d in reference)
    return 1.0 if n == 0 else 1.0 / n


class _DetectionF1(Evaluator):
    """Detection F1 of a model's detections (``detect``) against ``self.reference``'s."""

    name = "detection_f1"
    reference: list[Detections]
    iou: float

    @abstractmethod
    def detect(self, model_path: str | Path) -> list[Detections]:
        """The model's detections, one :class:`Detections` per image."""

    def evaluate(self, model_path: str | Path) -> float:
        return detection_f1(self.reference, self.detect(model_path), self.iou)

    def resolution(self) -> float | None:
        return detection_resolution(self.reference)

    def size_text(self) -> str:
        return f"{len(self.reference)} images, {sum(len(d) for d in self.reference)} reference detections"


class DetectionAgreement(_DetectionF1):
    """F1 at IoU ``iou`` of the candidate's detections against the reference model's.

    ``images`` are model inputs (arrays or feeds dicts) already preprocessed;
    ``decode_fn(outputs) -> Detections`` decodes one image's raw outputs.
    An image where both models find nothing counts as agreement.
    """

    name = "detection_f1"

    def __init__(self, reference_model: str | Path, images: Any, decode_fn: Callable[[Any], Detections],
                 iou: float = 0.5):
        self.feeds = _feeds_list(images)
        self.decode_fn, self.iou = decode_fn, float(iou)
        self.reference = self.detect(reference_model)
        n = sum(len(d) for d in self.reference)
        if n == 0:
            logger.warning("DetectionAgreement: the reference model detects nothing on %d images; F1 is "
                           "uninformative", len(self.feeds))

    def detect(self, model_path: str | Path) -> list[Detections]:
        sess = open_session(model_path)
        names = [o.name for o in sess.get_outputs()]
        return [self.decode_fn(dict(zip(names, _run(sess, _named(sess, f)), strict=True))) for f in self.feeds]


class FrameDetectionAgreement(_DetectionF1):
    """Detection F1 against the reference model, on raw frames, in frame pixels.

    Unlike :class:`DetectionAgreement`, which feeds fixed preprocessed tensors, each model is
    fed the frames letterboxed to *its own* input size (read from the graph), and the boxes
    are mapped back to the frame before matching. So candidates that change the input shape
    (``fix_input_shape``: rectangular inference) are judged on the same footing as the rest.
    ``decoder_factory((h, w)) -> decode_fn`` builds the output decoder for an input size
    (default: :class:`YoloxDecoder`); frames are HxWx3 uint8 in the model's colour order.
    """

    name = "detection_f1"

    def __init__(self, reference_model: str | Path, frames: Sequence[np.ndarray],
                 decoder_factory: Callable[[tuple[int, int]], Callable[[Any], Detections]] | None = None,
                 pad_value: int = 114, iou: float = 0.5):
        self.frames = [np.asarray(f) for f in frames]
        if not self.frames:
            raise ValueError("FrameDetectionAgreement needs at least one frame, got 0")
        bad = [f.shape for f in self.frames if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8]
        if bad:
            raise ValueError(f"frames must be HxWx3 uint8 images, got shapes/dtypes like {bad[0]}")
        self.decoder_factory = decoder_factory or (lambda hw: YoloxDecoder(input_size=hw))
        self.pad_value, self.iou = int(pad_value), float(iou)
        self.reference = self.detect(reference_model)
        if sum(len(d) for d in self.reference) == 0:
            logger.warning("FrameDetectionAgreement: the reference finds nothing on %d frames", len(self.frames))

    def detect(self, model_path: str | Path) -> list[Detections]:
        from sdk.preprocess import letterbox

        sess = open_session(model_path)
        inp = sess.get_inputs()[0]
        hw = tuple(inp.shape[2:4])
        if not all(isinstance(d, int) and d > 0 for d in hw):
            raise ValueError(f"{Path(model_path).name}: input {inp.name!r} needs fixed height and width, "
                             f"got shape {inp.shape}")
        decode = self.decoder_factory(hw)
        out = []
        for frame in self.frames:
            img, t = letterbox(frame, hw, pad_value=self.pad_value)
            x = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)
            out.append(decode(_run(sess, {inp.name: x})).map_xyxy(t.to_original))
        return out
