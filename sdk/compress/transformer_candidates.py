"""The candidate set for a transformer (weights mostly in MatMul; attention, LayerNorm).

What is tried, and why (measured on the Whisper tiny.en encoder, ``benchmarks/compress_whisper.py``):

* ``fp32_optimized``: onnxruntime's graph optimizations saved (same numbers, faster start).
* ``dynamic_int8`` / ``dynamic_int8_pc``: weights INT8 offline (per tensor / per output
  channel), activations quantized per call (``MatMulInteger``); the usual transformer INT8 on
  CPU, no calibration needed.
* ``static_qdq_pc`` / ``static_qdq_pct_pc``: activations INT8 from calibration ranges (MinMax /
  Percentile 99.99), weights per channel, QDQ (onnxruntime fuses it into ``QLinearMatMul``/
  ``MatMulInteger`` kernels). Only MatMul/Gemm are quantized: LayerNorm, Softmax and GELU stay
  float, as they do in every INT8 transformer recipe.
* ``int4_b{32,64,128}`` (and ``..._int8compute`` where the ISA has fast int8 dot products):
  weight-only INT4 ``MatMulNBits``, activations float; the block size trades size and
  accuracy (smaller blocks, more scales).
* ``weights_int8`` / ``fp16``: size recipes (FP32 speed on CPU).

Skipped, with the reason in the report: convolution-only recipes (QOperator, U8U8), the
block reconstruction (``int8_reconstructed``: built and validated on convolutional nets), and
the ISA-specific combinations of :mod:`sdk.compress.candidates`.
"""
from __future__ import annotations

from typing import Any

from sdk.compress.recipe import Recipe
from sdk.runtime.isa import needs_reduce_range

__all__ = ["INT4_BLOCKS", "is_transformer", "transformer_candidates"]

INT4_BLOCKS = (32, 64, 128)
_MATMUL_OPS = ["MatMul", "Gemm"]


def is_transformer(ops: set[str], share: dict[str, int]) -> bool:
    """Weights mostly in MatMul/Gemm, and attention-like ops (Softmax or LayerNormalization)."""
    return share["matmul"] > share["conv"] and "MatMul" in ops and bool({"Softmax", "LayerNormalization"} & ops)


def transformer_candidates(cs: Any, profile: str, static: bool = True) -> Any:
    """Fill ``cs`` (a :class:`sdk.compress.candidates.CandidateSet`) for a transformer on ``profile``."""
    cs.recipes["fp32_optimized"] = Recipe([{"pass": "optimize_graph", "level": "extended"}])
    cs.recipes["dynamic_int8"] = Recipe([{"pass": "quantize_dynamic", "op_types_to_quantize": _MATMUL_OPS}])
    cs.recipes["dynamic_int8_pc"] = Recipe([{"pass": "quantize_dynamic", "op_types_to_quantize": _MATMUL_OPS,
                                             "per_channel": True}])
    if static:
        types = "S8S8" if profile == "arm" else "U8S8"
        base = {"pass": "quantize_static", "format": "QDQ", "types": types, "per_channel": True,
                "reduce_range": needs_reduce_range(profile), "op_types_to_quantize": _MATMUL_OPS}
        cs.recipes["static_qdq_pc"] = Recipe([base])
        cs.recipes["static_qdq_pct_pc"] = Recipe([{**base, "calibrate_method": "Percentile", "percentile": 99.99}])
    else:
        cs.skip("static_qdq_*", "no calibration data for static activation ranges")
    int8_dot = profile in ("vnni", "arm")
    for bs in INT4_BLOCKS:
        cs.recipes[f"int4_b{bs}"] = Recipe([{"pass": "quantize_int4", "block_size": bs}])
        if int8_dot:
            cs.recipes[f"int4_b{bs}_int8compute"] = Recipe([{"pass": "quantize_int4", "block_size": bs,
                                                             "accuracy_level": 4}])
    if not int8_dot:
        cs.skip("int4_*_int8compute (accuracy_level 4)", "MatMulNBits computes in int8 fast only with VNNI/AMX "
                "(x86) or sdot (ARM); this CPU has neither")
    cs.recipes["weights_int8"] = Recipe([{"pass": "quantize_weights"}])
    cs.recipes["fp16"] = Recipe([{"pass": "fp16"}])
    cs.skip("static_qop_* / static_*_u8u8", "QOperator and U8U8 are the convolutional-net variants; a "
            "transformer's MatMuls run the QDQ U8S8 path")
    cs.skip("int8_reconstructed", "the INT8 block reconstruction is built and validated on convolutional nets; "
            "try it with --recipe")
    cs.per_node = False
    cs.skip("sensitivity analysis / weights_mixed_int4", "per-node sensitivity (static QDQ of layer groups) and the "
            "int4/int8 bit allocation are built for convolutional nets; the int4_b* MatMulNBits candidates cover "
            "weight-only INT4 here")
    return cs
