"""Which detector to run: the default YOLOX-nano, a local file or bundle, and its optimized variant.

* Default: the ``yolox-nano`` entry of the SDK model store (official YOLOX release URL,
  SHA-256 pinned in the catalog); ``--model PATH`` takes a local ``.onnx`` or a bundle.
* Optimized variant: built **on the user's machine, on first use**, by applying the
  committed recipe ``recipes/yolox_nano_cpu.yaml`` (``sdk.compress.Recipe``) to the FP32
  model, then measuring its detection agreement (F1 at IoU 0.5, same class) with the FP32
  model on calibration frames from the user's own source, and its latency against FP32.
  The result is cached as a bundle under ``$EDGEWISE_HOME/driving/<fp32 sha256>/`` whose
  manifest records the recipe, its hash and those metrics. No derived weights are shipped.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from sdk import logger
from sdk.detect import MatchCounts, match_counts
from sdk.errors import BundleError, IntegrityError, StoreError

from .detect.detector import Detector, DetectorOptions

YOLOX_NANO = "yolox-nano"
YOLOX_NANO_SHA256 = "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd"
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
DEFAULT_RECIPE = RECIPES_DIR / "yolox_nano_cpu.yaml"
YOLOX_DETECTOR = {"adapter": "yolox", "adapter_options": {"strides": [8, 16, 32], "apply_sigmoid": False},
                  "input_size": [416, 416], "pad_value": 114}


@dataclass
class ModelChoice:
    """A resolved detector: the FP32 model path, and the bundle actually run (if any)."""

    fp32_path: Path
    detector_options: DetectorOptions
    bundle: object | None = None   # sdk.bundle.Bundle of the optimized variant / a given bundle

    @property
    def path(self) -> Path:
        return self.bundle.model_path("model") if self.bundle is not None else self.fp32_path

    def detector(self, engine_options=None, **overrides) -> Detector:
        from sdk.runtime import Engine, EngineOptions

        opts = self.detector_options.model_copy(update=overrides) if overrides else self.detector_options
        return Detector(Engine(str(self.path), engine_options or EngineOptions()), opts)


def sha256_of(path: str | Path) -> str:
    from sdk.bundle import file_sha256

    return file_sha256(path)


def verify_sha256(path: str | Path, expected: str = YOLOX_NANO_SHA256) -> Path:
    """``path`` if its SHA-256 is ``expected``; IntegrityError naming both otherwise."""
    got = sha256_of(path)
    if got != expected:
        raise IntegrityError(f"{path}: SHA-256 {got} does not match the expected {expected}")
    return Path(path)


def edgewise_home() -> Path:
    from sdk.bundle import ModelStore

    return ModelStore().cache_dir


def resolve_model(model: str | Path | None = None) -> ModelChoice:
    """``None`` -> the store's yolox-nano (cached, or pulled unless offline); a path -> that
    ``.onnx`` (YOLOX adapter assumed) or bundle folder/``.ewb`` (adapter from its manifest)."""
    if model is None:
        from sdk.bundle import ModelStore

        store = ModelStore()
        try:
            path = store.path(YOLOX_NANO)
        except StoreError:  # not cached yet: pull (OfflineError when EDGEWISE_OFFLINE=1)
            path = store.pull(YOLOX_NANO, progress=True)
        return ModelChoice(Path(path), DetectorOptions(**YOLOX_DETECTOR))
    p = Path(model)
    if not p.exists():
        raise FileNotFoundError(f"model not found: {p}")
    if p.is_dir() or p.suffix == ".ewb":
        from sdk.bundle import load_bundle

        b = load_bundle(p)
        spec = dict(b.manifest.extra.get("detector") or YOLOX_DETECTOR)
        return ModelChoice(b.model_path("model"), DetectorOptions(**spec), bundle=b)
    return ModelChoice(p, DetectorOptions(**YOLOX_DETECTOR))


# -- the optimized variant --------------------------------------------------------------
def recipe_sha256(recipe_path: Path) -> str:
    return hashlib.sha256(Path(recipe_path).read_bytes()).hexdigest()


def detection_agreement(reference: Detector, candidate: Detector, frames: Sequence[np.ndarray],
                        iou: float = 0.5) -> dict[str, float]:
    """F1 (IoU >= ``iou``, same class) of ``candidate``'s detections against ``reference``'s."""
    tp = fp = fn = 0
    n_ref = 0
    for f in frames:
        ref = reference(f)
        a, b, c = match_counts(ref, candidate(f), iou)
        tp, fp, fn, n_ref = tp + a, fp + b, fn + c, n_ref + len(ref)
    return {"detection_agreement_f1": MatchCounts(tp, fp, fn).f1, "agreement_frames": float(len(frames)),
            "agreement_reference_boxes": float(n_ref), "agreement_tp": float(tp), "agreement_fp": float(fp),
            "agreement_fn": float(fn)}


def _latency_pair_ms(a: Detector, b: Detector, frame: np.ndarray, iters: int) -> tuple[float, float]:
    """Median model latency of two detectors, measured in alternating rounds (fair under load)."""
    from sdk.bench import measure_latency

    blob_a, blob_b = a.preprocess(frame)[0], b.preprocess(frame)[0]
    rounds = max(1, iters // 5)
    pa, pb = [], []
    for _ in range(rounds):
        pa.append(measure_latency(lambda: a.infer(blob_a), warmup=1, iters=5).p50_ms)
        pb.append(measure_latency(lambda: b.infer(blob_b), warmup=1, iters=5).p50_ms)
    return float(np.median(pa)), float(np.median(pb))


def rect_input_size(frame_hw: tuple[int, int], base: int = 416, stride: int = 32) -> tuple[int, int]:
    """Smallest (h, w), multiples of ``stride``, that hold a frame letterboxed to ``base`` on its
    long side: (256, 416) for 16:9. YOLOv5 calls this rectangular inference."""
    h, w = frame_hw
    s = base / max(h, w)
    return (min(base, int(np.ceil(h * s / stride)) * stride), min(base, int(np.ceil(w * s / stride)) * stride))


def specialize_input(model_in: str | Path, model_out: str | Path, input_hw: tuple[int, int]) -> Path:
    """Copy of a shape-generic YOLOX graph with its input fixed to ``1x3xHxW`` (the anchor count
    of its output left symbolic), made by the SDK's ``fix_input_shape`` compression pass."""
    from sdk.compress import FixInputShape, PassContext

    return FixInputShape(shape=[1, 3, int(input_hw[0]), int(input_hw[1])]).run(
        Path(model_in), Path(model_out), PassContext())


def build_optimized(fp32: str | Path, frames: Sequence[np.ndarray], recipe: str | Path = DEFAULT_RECIPE,
                    out_dir: str | Path | None = None, latency_iters: int = 20, progress: bool = False,
                    rebuild: bool = False, rect: bool = True):
    """The optimized bundle for ``fp32`` (cached; built from ``recipe`` on first use).

    ``frames`` (BGR images from the user's own source) serve as calibration data for the
    passes that need it and as the set on which agreement with FP32 is measured. With
    ``rect`` the input is first specialized to the frames' aspect ratio (416x256 for 16:9:
    ~38% less compute than 416x416, whose lower part would only be padding).
    """
    from sdk.bundle import Manifest, ModelEntry, Provenance, load_bundle, save_bundle
    from sdk.compress import CalibrationData, Recipe

    fp32, recipe = Path(fp32), Path(recipe)
    sha = sha256_of(fp32)
    rsha = recipe_sha256(recipe)
    if not frames:
        raise ValueError("building the optimized detector needs calibration frames from your source, got none")
    input_hw = rect_input_size(frames[0].shape[:2]) if rect else tuple(YOLOX_DETECTOR["input_size"])
    out = Path(out_dir) if out_dir is not None else edgewise_home() / "driving" / sha
    if out.exists() and not rebuild:
        try:
            b = load_bundle(out)
            if (b.manifest.extra.get("recipe_sha256") == rsha and b.manifest.provenance.parent_sha256 == sha
                    and tuple(b.manifest.extra["detector"]["input_size"]) == tuple(input_hw)):
                return b
            logger.info("optimized detector at %s was built from another recipe, model or input size: rebuilding", out)
        except (BundleError, KeyError) as exc:
            logger.warning("cached optimized detector at %s is unusable (%s): rebuilding", out, exc)
    rec = Recipe.from_file(recipe)
    spec = dict(YOLOX_DETECTOR, input_size=list(input_hw))
    opts = DetectorOptions(**spec)
    with Detector.from_model_path(fp32, DetectorOptions(**YOLOX_DETECTOR)) as ref:
        tmp = Path(tempfile.mkdtemp(prefix="edgewise-drive-"))
        try:
            logger.warning("building the optimized detector (input %sx%s, %s) on this machine; cached in %s",
                           input_hw[1], input_hw[0], rec.describe(), out)
            base = specialize_input(fp32, tmp / "rect.onnx", input_hw) if input_hw != (416, 416) else fp32
            with Detector.from_model_path(base, opts) as shaped:
                feeds = [{shaped.input_name: shaped.preprocess(f)[0]} for f in frames]
            model_out = rec.apply(base, tmp / "model.onnx", calib=CalibrationData.from_iterable(feeds),
                                  progress=progress)
            with Detector.from_model_path(model_out, opts) as cand:
                metrics = detection_agreement(ref, cand, frames)
                metrics["latency_p50_ms_fp32"], metrics["latency_p50_ms_optimized"] = _latency_pair_ms(
                    ref, cand, frames[0], latency_iters)
            manifest = Manifest(
                name="yolox-nano-driving-optimized", version="1.0.0", task="detection",
                description=f"YOLOX-nano, input {input_hw[1]}x{input_hw[0]}, compressed on this machine with "
                            f"{recipe.name}: {rec.describe()}",
                models={"model": ModelEntry(file="model.onnx")},
                metrics=metrics,
                provenance=Provenance(recipe=f"apps/driving_perception/recipes/{recipe.name}", licence="Apache-2.0",
                                      source_url="https://github.com/Megvii-BaseDetection/YOLOX", parent_sha256=sha,
                                      notes="derived on the user's machine; never redistributed"),
                extra={"detector": spec, "recipe": rec.to_list(), "recipe_sha256": rsha},
            )
            b = save_bundle(out, manifest, files={"model.onnx": model_out}, overwrite=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    logger.warning("optimized detector: agreement F1 %.3f with FP32, p50 %.1f ms vs %.1f ms FP32",
                   metrics["detection_agreement_f1"], metrics["latency_p50_ms_optimized"],
                   metrics["latency_p50_ms_fp32"])
    return b


def optimized_choice(base: ModelChoice, frames: Sequence[np.ndarray], recipe: str | Path = DEFAULT_RECIPE,
                     **kwargs) -> ModelChoice:
    """The optimized variant of ``base`` (a plain FP32 model) as a ModelChoice."""
    b = build_optimized(base.fp32_path, frames, recipe, **kwargs)
    return ModelChoice(base.fp32_path, DetectorOptions(**b.manifest.extra["detector"]), bundle=b)
