"""The real Whisper tiny.en export (``../shared``): the FP32 reference rebuilt from its INT8
files, INT4 of both, and a real LJ Speech window through the encoder. Skipped where the shared
data is absent."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from sdk.compress import QuantizeInt4
from sdk.compress.base import PassContext
from sdk.compress.dequantize import dequantize_file
from sdk.graphs import count_ops_deep, initializer_map, iter_scoped
from tests.skips import file_or_skip

FP32_ENCODER_BYTES = 32_878_338      # the FP32 export's size in PROVENANCE.md


@pytest.fixture(scope="module")
def whisper_dir(shared_dir) -> Path:
    d = shared_dir / "models" / "whisper-tiny.en" / "onnx"
    return file_or_skip(d / "encoder_model_quantized.onnx", f"Whisper tiny.en INT8 export not found in {d}").parent


@pytest.fixture(scope="module")
def reference(whisper_dir, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("whisper_ref")
    ref = {}
    for role, stem in (("encoder", "encoder_model"), ("decoder", "decoder_model_merged")):
        ref[role] = out / f"{stem}.onnx"
        ref[role + "_report"] = dequantize_file(whisper_dir / f"{stem}_quantized.onnx", ref[role])
    return ref


def _const_matmuls(model: onnx.ModelProto) -> int:
    """MatMuls on a constant weight: an initializer or a Transpose of one (the tied proj_out)."""
    inits = initializer_map(model)

    def const(name: str, producer: dict) -> bool:
        t = producer.get(name)
        return name in inits or (t is not None and t.op_type == "Transpose" and t.input[0] in inits)
    return sum(1 for g, producer in iter_scoped(model.graph) for n in g.node
               if n.op_type == "MatMul" and const(n.input[1], producer))


def test_reference_encoder_is_float_and_the_fp32_size(reference):
    assert reference["encoder_report"] == {"dequantized": 26, "integer_left": 0}   # 24 MatMul + 2 Conv
    ops = count_ops_deep(onnx.load(reference["encoder"]))
    assert ops["MatMul"] == 32 and ops["Conv"] == 2
    assert not {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "DequantizeLinear"} & set(ops)
    assert abs(reference["encoder"].stat().st_size - FP32_ENCODER_BYTES) / FP32_ENCODER_BYTES < 0.01


def test_reference_decoder_is_float_in_both_branches(reference):
    assert reference["decoder_report"]["integer_left"] == 0
    m = onnx.load(reference["decoder"])
    ops = count_ops_deep(m)
    assert not {"MatMulInteger", "DynamicQuantizeLinear", "DequantizeLinear"} & set(ops) and ops["If"] == 1
    assert _const_matmuls(m) == 74        # 36 projections + proj_out, in each of the two branches


def test_int4_of_the_reference_packs_every_weight(reference, tmp_path):
    for role, packed, attention in (("encoder", 24, 8), ("decoder", 74, 32)):
        out = QuantizeInt4(block_size=32).run(reference[role], tmp_path / f"{role}_int4.onnx",
                                              PassContext(work_dir=tmp_path)).path
        m = onnx.load(out)
        ops = count_ops_deep(m)
        assert ops["MatMulNBits"] == packed and ops["MatMul"] == attention   # Q@K^T and P@V stay float
        assert _const_matmuls(m) == 0                                          # no float weight MatMul left
        assert out.stat().st_size < reference[role].stat().st_size


def test_reference_agrees_with_the_shipped_encoder_on_real_speech(reference, whisper_dir, shared_dir):
    import onnxruntime as ort

    from sdk.preprocess import load_audio, whisper_input_features

    wav = shared_dir / "data" / "speech" / "ljspeech" / "LJ001-0001.wav"
    if not wav.is_file():
        pytest.skip(f"{wav} not found")
    x = whisper_input_features(load_audio(wav, 16000))
    a = ort.InferenceSession(str(reference["encoder"])).run(None, {"input_features": x})[0].reshape(-1)
    b = ort.InferenceSession(str(whisper_dir / "encoder_model_quantized.onnx")).run(
        None, {"input_features": x})[0].reshape(-1)
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert 0.99 < cos < 1.0      # the same weights; the shipped file also quantizes activations
