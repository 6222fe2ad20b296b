"""Bundles around real models: PP-OCRv4 and silero-vad (pip packages), YOLOX-nano (../shared)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from sdk.bundle import Manifest, ModelEntry, Provenance, load_bundle, pack_bundle, save_bundle
from sdk.runtime import EngineOptions


def _package_model(module: str, rel: str) -> Path:
    spec = importlib.util.find_spec(module)  # locate without importing (silero_vad imports torch)
    if spec is None or not spec.origin:
        pytest.skip(f"{module} is not installed (it is a dev dependency)")
    p = Path(spec.origin).parent / rel
    if not p.is_file():
        pytest.skip(f"{p} not found in the installed {module}")
    return p


def _compare_with_bare_ort(bundle, feed: dict) -> None:
    import onnxruntime as ort

    bare = ort.InferenceSession(str(bundle.model_path()), providers=["CPUExecutionProvider"])
    want = bare.run(None, feed)
    with bundle.engine(options=EngineOptions(warmup=0)) as eng:
        got = eng.run(feed)
    for w, name in zip(want, [o.name for o in bare.get_outputs()], strict=True):
        np.testing.assert_array_equal(got[name], w)


def test_ppocr_detector_bundle_via_archive(tmp_path):
    det = _package_model("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx")
    man = Manifest(name="ppocr-det", version="4.0", task="text-detection",
                   models={"model": ModelEntry(file="det.onnx")},
                   provenance=Provenance(licence="Apache-2.0", source_url="https://github.com/RapidAI/RapidOCR"))
    b = save_bundle(tmp_path / "b", man, {"det.onnx": det})
    assert b.manifest.models["model"].inputs[0].shape[1] == 3
    loaded = load_bundle(pack_bundle(b.path, tmp_path / "det.ewb"))
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    _compare_with_bare_ort(loaded, {loaded.manifest.models["model"].inputs[0].name: x})


def test_silero_vad_bundle_with_subgraphs(tmp_path):
    vad = _package_model("silero_vad", "data/silero_vad.onnx")
    man = Manifest(name="silero-vad", version="5", task="vad", models={"model": ModelEntry(file="vad.onnx")})
    b = load_bundle(save_bundle(tmp_path / "v", man, {"vad.onnx": vad}).path)
    names = {t.name for t in b.manifest.models["model"].inputs}
    assert {"input", "state", "sr"} <= names
    feed = {"input": np.zeros((1, 512), np.float32), "state": np.zeros((2, 1, 128), np.float32),
            "sr": np.array(16000, dtype=np.int64)}
    _compare_with_bare_ort(b, feed)


@pytest.mark.shared
def test_yolox_bundle(yolox_path, tmp_path):
    man = Manifest(name="yolox-nano", version="0.1.1rc0", task="detection",
                   models={"model": ModelEntry(file="yolox_nano.onnx")}, labels=["person", "bicycle", "car"],
                   provenance=Provenance(dataset="COCO", licence="Apache-2.0"))
    b = save_bundle(tmp_path / "y", man, {"yolox_nano.onnx": yolox_path})
    assert b.manifest.files["yolox_nano.onnx"] == "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd"
    x = np.random.default_rng(1).random((1, 3, 416, 416), dtype=np.float32) * 255
    _compare_with_bare_ort(load_bundle(b.path), {"images": x})
