"""Audio as calibration data for a speech encoder, and the transformer candidate set.

The encoder here is Whisper's front in small: ``input_features`` [1, 80, 3000] (Whisper's
log-mel of a 30 s window) -> Transpose -> MatMul -> LayerNorm -> MatMul, so the transformer
candidates apply; the audio files are written here (real LJ Speech runs in
``test_whisper_compress.py`` where ``../shared`` is present).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.compress.audio_calib import (
    audio_evaluation,
    audio_files,
    encoder_feeds,
    is_audio_data,
    split_files,
)
from sdk.compress.candidates import candidate_set
from sdk.errors import CompressionError
from sdk.graphs import count_ops_deep
from sdk.pipeline import write_wav
from sdk.preprocess import load_audio, log_mel_spectrogram, whisper_input_features


def build_tiny_encoder(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((80, 64)) / 9).astype(np.float32)
    w2 = (rng.standard_normal((64, 32)) / 8).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Transpose", ["input_features"], ["t"], perm=[0, 2, 1], name="t"),
         helper.make_node("MatMul", ["t", "w1"], ["h"], name="fc1"),
         helper.make_node("LayerNormalization", ["h", "ln_g", "ln_b"], ["n"], name="ln", axis=-1),
         helper.make_node("MatMul", ["n", "w2"], ["last_hidden_state"], name="fc2")], "tiny_encoder",
        [helper.make_tensor_value_info("input_features", TensorProto.FLOAT, ["batch_size", 80, 3000])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch_size", 3000, 32])],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
                     numpy_helper.from_array(np.ones(64, np.float32), "ln_g"),
                     numpy_helper.from_array(np.zeros(64, np.float32), "ln_b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def _speechlike(seconds: float, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 40 * seed
    voiced = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.2 * voiced / 3 + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture
def wav_dir(tmp_path) -> Path:
    d = tmp_path / "clips"
    d.mkdir()
    for i in range(5):
        write_wav(d / f"clip{i}.wav", _speechlike(1.5 + 0.5 * i, 22050, i), 22050)
    (d / "notes.txt").write_text("not audio")
    return d


def test_whisper_input_features_pad_a_short_clip_to_30s():
    audio = _speechlike(2.0, 16000, 0)
    x = whisper_input_features(audio)
    assert x.shape == (1, 80, 3000) and x.dtype == np.float32
    padded = np.zeros(480000, np.float32)
    padded[:len(audio)] = audio
    np.testing.assert_allclose(x[0], log_mel_spectrogram(padded, whisper=True), atol=1e-6)
    np.testing.assert_array_equal(whisper_input_features(np.zeros(0, np.float32)),
                                  whisper_input_features(np.zeros(16000, np.float32)))   # empty = silence
    long = whisper_input_features(np.tile(audio, 20))           # 40 s: the first 30 s only
    assert long.shape == (1, 80, 3000)


def test_load_audio_resamples_wav_and_reads_flac(wav_dir, tmp_path):
    a = load_audio(wav_dir / "clip0.wav", 16000)
    assert a.dtype == np.float32 and abs(len(a) - 24000) <= 1
    sf = pytest.importorskip("soundfile", reason="FLAC needs soundfile (extra `speech`)")
    sig = _speechlike(1.0, 16000, 2)
    sf.write(tmp_path / "c.flac", sig, 16000)
    np.testing.assert_allclose(load_audio(tmp_path / "c.flac"), sig, atol=1e-4)   # 16-bit FLAC
    with pytest.raises(ValueError, match="expected an audio file"):
        load_audio(wav_dir / "notes.txt")


def test_audio_files_and_split(wav_dir):
    files = audio_files([wav_dir])
    assert [f.name for f in files] == [f"clip{i}.wav" for i in range(5)]
    assert is_audio_data([wav_dir]) and not is_audio_data([wav_dir / "notes.txt"])
    search, held = split_files(files, 0.4)
    assert [f.name for f in held] == ["clip1.wav", "clip3.wav"] and len(search) == 3
    assert split_files(files, None) == (files, [])
    with pytest.raises(ValueError, match="cannot hold out 50% of 1 audio file"):
        split_files(files[:1], 0.5)


def test_encoder_feeds_and_evaluation(wav_dir, tmp_path):
    enc = build_tiny_encoder(tmp_path / "enc.onnx")
    feeds = encoder_feeds(enc, audio_files([wav_dir]))
    assert len(feeds) == 5 and set(feeds[0]) == {"input_features"} and feeds[0]["input_features"].shape == (1, 80, 3000)
    calib, ev, hev = audio_evaluation(enc, [wav_dir], 0.4)
    assert len(calib.materialize()) == 3 and ev.size_text() == "3 window(s) of 3 audio file(s)"
    assert hev.size_text() == "2 window(s) of 2 audio file(s)"
    assert ev(enc) == pytest.approx(1.0) and hev(enc) == pytest.approx(1.0)


def test_audio_calibration_refuses_a_non_speech_model(wav_dir, tiny_cnn_path):
    with pytest.raises(CompressionError, match="input_features"):
        encoder_feeds(tiny_cnn_path, audio_files([wav_dir]))


def test_transformer_candidate_set(tmp_path):
    from sdk.runtime import DeviceInfo

    enc = build_tiny_encoder(tmp_path / "enc.onnx")
    vnni = DeviceInfo(isa={"avx2": True, "avx512f": True, "avx512_vnni": True}, machine="x86_64")
    avx2 = DeviceInfo(isa={"avx2": True}, machine="x86_64")
    cs = candidate_set(enc, "cpu", vnni)
    assert not cs.per_node
    assert {"fp32_optimized", "dynamic_int8", "dynamic_int8_pc", "static_qdq_pc", "static_qdq_pct_pc", "int4_b32",
            "int4_b64", "int4_b128", "int4_b32_int8compute"} <= set(cs.recipes)
    assert not {"int8_reconstructed", "static_qop_pct_pc", "static_qop_u8u8"} & set(cs.recipes)
    skipped = {s["name"]: s["reason"] for s in cs.skipped}
    assert "int8_reconstructed" in skipped and "convolutional" in skipped["int8_reconstructed"]
    static = cs.recipes["static_qdq_pc"].to_list()[0]
    assert static["per_channel"] and static["op_types_to_quantize"] == ["MatMul", "Gemm"]
    cs2 = candidate_set(enc, "cpu", avx2)
    assert "int4_b32_int8compute" not in cs2.recipes and cs2.recipes["static_qdq_pc"].to_list()[0]["reduce_range"]
    assert any("int8compute" in s["name"] for s in cs2.skipped)


def test_cli_optimize_on_audio(wav_dir, tmp_path, capsys):
    """The CLI path: audio files -> log-mel feeds, files held out whole, cosine on both parts.
    (One recipe, to stay fast: the candidate set itself is tested above.)"""
    from sdk.bundle import load_bundle
    from sdk.cli.main import main

    enc = build_tiny_encoder(tmp_path / "enc.onnx")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- pass: quantize_int4\n  block_size: 32\n")
    out = tmp_path / "bundle"
    rc = main(["optimize", str(enc), "--calib", str(wav_dir), "--max-drop", "0.05", "--out", str(out),
               "--json", "--no-progress", "--size-only", "--recipe", str(recipe)])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["evaluation"]["search"]["size"] == "3 window(s) of 3 audio file(s)"
    assert data["evaluation"]["holdout"]["size"] == "2 window(s) of 2 audio file(s)"
    assert data["sensitivity"] is None and data["bit_allocation"] is None
    c = next(c for c in data["candidates"] if c["name"] == "recipe")
    assert c["error"] is None and 0.9 < c["metric"] < 1.0 and c["search_metric"] != c["metric"]
    assert data["chosen"] == "recipe"
    assert count_ops_deep(onnx.load(load_bundle(out).model_path("model")))["MatMulNBits"] == 2
    assert main(["optimize", str(enc), "--calib", str(wav_dir), "--eval", "top1", "--out", str(tmp_path / "x")]) != 0
    assert "--eval fidelity" in capsys.readouterr().err


def test_transformer_recipes_build_integer_graphs(wav_dir, tmp_path):
    enc = build_tiny_encoder(tmp_path / "enc.onnx")
    calib, _, _ = audio_evaluation(enc, [wav_dir], None)
    cs = candidate_set(enc, "cpu", None)
    built = {n: count_ops_deep(onnx.load(cs.recipes[n].apply(enc, tmp_path / f"{n}.onnx", calib=calib,
                                                               work_dir=tmp_path).path))
             for n in ("int4_b32", "dynamic_int8", "static_qdq_pc")}
    assert built["int4_b32"]["MatMulNBits"] == 2 and "MatMul" not in built["int4_b32"]   # none left float
    assert built["dynamic_int8"]["MatMulInteger"] == 2 and "MatMul" not in built["dynamic_int8"]
    assert built["dynamic_int8"]["LayerNormalization"] == 1                               # LayerNorm stays float
    st = built["static_qdq_pc"]
    assert st["QuantizeLinear"] >= 2 and st["DequantizeLinear"] >= 4 and st["LayerNormalization"] == 1
