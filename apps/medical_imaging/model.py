"""The classifier behind a triage bundle: verified ONNX model + its manifest's policy, gate
settings and out-of-distribution statistics."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from apps.medical_imaging.gate import Accepts, Quality
from apps.medical_imaging.ood import OODModel
from apps.medical_imaging.policy import Policy
from sdk.bundle import load_bundle
from sdk.closing import Closing
from sdk.runtime import EngineOptions, SessionOptions

BUNDLES_DIR = Path(__file__).resolve().parent / "bundles"
DEFAULT_BUNDLE = BUNDLES_DIR / "pneumonia-triage"


def default_bundles() -> list[Path]:
    """The committed triage bundles, served by modality: chest X-ray first (it also takes
    plain images), then breast ultrasound where present."""
    found = [p for p in (DEFAULT_BUNDLE, BUNDLES_DIR / "breast-us-triage") if (p / "manifest.json").is_file()]
    return found or [DEFAULT_BUNDLE]


class TriageModel(Closing):
    """Load a bundle (hashes verified before onnxruntime reads it) and run it on frames.

    ``predict(frames)`` -> ``(probabilities (N,), ood_scores (N,), logits (N, 2))``.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, bundle: str | Path = DEFAULT_BUNDLE, role: str = "model", threads: int | None = 1):
        self.bundle = load_bundle(bundle)
        m = self.bundle.manifest
        extra = m.extra or {}
        missing = [k for k in ("accepts", "policy", "ood") if k not in extra]
        if missing:
            from sdk.errors import BundleError
            raise BundleError(f"bundle {m.name} is not a triage bundle: manifest.extra lacks {missing}")
        self.name, self.version, self.role = m.name, m.version, role
        self.accepts = Accepts.model_validate(extra["accepts"])
        self.quality = Quality.model_validate(extra.get("quality", {}))
        self.policy = Policy.model_validate(extra["policy"])
        self.ood = OODModel.model_validate(extra["ood"])
        self.input_size = tuple(extra.get("input_size", (28, 28)))
        self.sha256 = m.files[m.models[role].file]
        self.engine = self.bundle.engine(role, EngineOptions(
            session=SessionOptions(intra_op_threads=threads, inter_op_threads=1)))
        self._pre = self.bundle.preprocessor()
        self._in = self.engine.inputs[0].name
        names = [o.name for o in self.engine.outputs]
        self._out = ["logits", "features"] if "features" in names else [names[0]]

    def prepare(self, frames: list[np.ndarray]) -> np.ndarray:
        """Gray float frames in [0, 1] -> model input batch (N, 1, H, W) float32."""
        return np.concatenate([self._pre(np.ascontiguousarray(f, np.float32)) for f in frames])

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outs = self.engine.run_list({self._in: x}, output_names=self._out)
        return outs[0], (outs[1] if len(outs) > 1 else None)

    def predict(self, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, feats = self.run(self.prepare(frames))
        p = self.policy.probability(logits)
        ood = self.ood.score(feats) if feats is not None else np.zeros(len(p))
        return p, ood, logits

    def close(self) -> None:
        self.engine.close()
