"""Which recipes the search tries, given the model and the hardware it will run on.

The candidate set is built from :class:`sdk.runtime.DeviceInfo`: combinations that are
known to be slow or wrong on this instruction set are not tried, and each one left out is
returned with its reason, so the report can say what was skipped and why:

* x86 without VNNI (AVX2, AVX-512F alone): onnxruntime's u8 x s8 kernel multiplies with
  ``vpmaddubsw``, whose int16 sums saturate; 8-bit weights lose accuracy there unless they
  are 7-bit (``reduce_range``), so the U8S8 candidates use it.
* x86 with VNNI or AMX (``vpdpbusd`` accumulates in int32): ``reduce_range`` only costs
  precision, and U8U8 is slower than U8S8; both are skipped.
* ARM: onnxruntime's fast integer path there is S8S8 (``sdot``); U8U8 and the x86-specific
  ``reduce_range`` variants are skipped.
* Constant scale/shift nodes next to convolutions (PP-LCNet's affine blocks: PP-OCRv4 det has
  86 ``Mul`` and 89 ``Add`` around 62 convs): the INT8 recipes are tried after ``fold_affine``
  folds them into the convs (exactly), as ``folded_*``, with the folded FP32 and an AdaRound
  reconstruction (``folded_int8_adaround``, where torch is installed); the unfolded static INT8
  recipes and the sensitivity analysis (which quantizes the unfolded graph) are skipped: folding
  changes nothing the model computes, and unfolded each affine block is an integer op of its own
  (PP-OCRv4 det: unfolded ``int8_reconstructed`` 1.30x FP32, folded 1.63x, at the same cosine).
* Dynamic INT8 on a convolutional model: onnxruntime runs ``ConvInteger`` as im2col plus an
  integer GEMM per call with the activations quantized on the fly (YOLOX-nano: 0.24x FP32),
  so it is only tried when the model's weights sit mostly in MatMul/Gemm.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from onnx import numpy_helper

from sdk.compress.fold_affine import foldable
from sdk.compress.graph_prep import const_weight_matmuls, load_model, op_types
from sdk.compress.recipe import Recipe
from sdk.compress.transformer_candidates import is_transformer, transformer_candidates
from sdk.runtime.isa import isa_profile, needs_reduce_range

__all__ = ["CandidateSet", "candidate_set", "default_candidates", "sensitivity_candidates", "shape_candidates",
           "relu_candidates", "SENSITIVITY_CONFIG", "isa_profile", "needs_reduce_range", "MIN_SILU_FOR_RELU"]

#: a model needs this many SiLUs before the ReLU-student candidates are worth their training time
MIN_SILU_FOR_RELU = 8

SENSITIVITY_CONFIG = {"format": "QDQ", "types": "U8S8", "per_channel": True, "calibrate_method": "Percentile",
                      "percentile": 99.99}


@dataclass
class CandidateSet:
    recipes: dict[str, Recipe] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)    # {"name", "reason"}
    profile: str = ""
    per_node: bool = True     # run the per-node sensitivity analysis and bit allocation on top
    sensitivity: bool = True  # ... and the sensitivity analysis (off where only folded INT8 is tried)

    def skip(self, name: str, reason: str) -> None:
        self.skipped.append({"name": name, "reason": reason})


def _weight_share(model: Any) -> dict[str, int]:
    """Parameters held by Conv weights versus MatMul/Gemm weights."""
    inits = {t.name: t for t in model.graph.initializer}
    share = {"conv": 0, "matmul": 0}
    for n in model.graph.node:
        if n.op_type in ("Conv", "MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in inits:
            size = int(np.prod(numpy_helper.to_array(inits[n.input[1]]).shape))
            share["conv" if n.op_type == "Conv" else "matmul"] += size
    return share


def candidate_set(model_path: str | Path, target: str = "cpu", device: Any | None = None,
                  static: bool = True) -> CandidateSet:
    """The recipes worth trying for this model on this target and device (before sensitivity)."""
    model = load_model(model_path, check=False, load_external_data=False)
    ops = op_types(model)
    prof = isa_profile(device) if target == "cpu" else f"{target} (onnxruntime EP)"
    cs = CandidateSet(profile=prof)
    cs.recipes["fp32_optimized"] = Recipe([{"pass": "optimize_graph", "level": "extended"}])
    share = _weight_share(model)
    if is_transformer(ops, share):      # MatMul/attention models: sdk.compress.transformer_candidates
        return transformer_candidates(cs, prof, static)
    # weights held in Constant nodes (paddle2onnx) are not initializers: judge by the op types then
    conv_model = share["conv"] > share["matmul"] or ("Conv" in ops and not {"MatMul", "Gemm"} & ops)
    if conv_model:
        cs.skip("dynamic_int8", "ConvInteger with on-the-fly activation quantization has no fast CPU kernel "
                "(YOLOX-nano measured 0.24x FP32); the model's weights sit mostly in Conv")
    else:
        cs.recipes["dynamic_int8"] = Recipe([{"pass": "quantize_dynamic"}])
    rr = needs_reduce_range(prof)
    if static:
        act_w = "S8S8" if prof == "arm" else "U8S8"
        base = {"format": "QDQ", "types": act_w, "per_channel": True, "reduce_range": rr}
        cs.recipes["static_qdq_pc"] = Recipe([{"pass": "quantize_static", **base}])
        cs.recipes["static_qdq_pct_pc"] = Recipe([{"pass": "quantize_static", **base, "calibrate_method": "Percentile",
                                                   "percentile": 99.99}])
        cs.recipes["static_qop_pct_pc"] = Recipe([{"pass": "quantize_static", **base, "format": "QOperator",
                                                   "calibrate_method": "Percentile", "percentile": 99.99}])
        cs.recipes["int8_reconstructed"] = Recipe([{"pass": "quantize_int8", "types": act_w, "reduce_range": rr}])
        if prof == "vnni":
            cs.skip("static_*_rr (reduce_range)", "this CPU has VNNI/AMX: 32-bit accumulation does not saturate, so "
                    "7-bit weights only lose precision")
            cs.skip("static_*_u8u8", "U8U8 is slower than U8S8 with VNNI")
        elif prof == "avx2":
            cs.skip("static_* without reduce_range", "no VNNI: the u8 x s8 multiply-add saturates int16; weights "
                    "are quantized to 7 bits (reduce_range)")
            cs.recipes["static_qop_u8u8"] = Recipe([{"pass": "quantize_static", "format": "QOperator",
                                                     "types": "U8U8", "per_channel": True}])
        elif prof == "arm":
            cs.skip("static_*_u8s8 / u8u8", "on ARM onnxruntime's fast integer path is S8S8 (sdot)")
        else:
            cs.recipes["static_qop_u8u8"] = Recipe([{"pass": "quantize_static", "format": "QOperator",
                                                     "types": "U8U8", "per_channel": True}])
    if _add_folded(cs, model):
        unfolded = [n for n in cs.recipes if n.startswith(("static_", "int8_"))]
        for name in unfolded:
            del cs.recipes[name]
        cs.skip(", ".join(unfolded), "the model has constant scale/shift nodes next to its convs: their folded_* "
                "copies are tried instead (fold_affine is exact; unfolded, each affine node is an integer op of "
                "its own)")
        cs.sensitivity = False
        cs.skip("sensitivity analysis (keep-float candidates)", "it quantizes the unfolded graph; only folded INT8 is "
                "tried (PP-OCRv4 det: no conv kept in float raised the folded INT8's cosine by more than 0.0005)")
    cs.recipes["fp16"] = Recipe([{"pass": "fp16"}])
    # size recipe that keeps activations in float: ~4x smaller, FP32 speed and accuracy
    cs.recipes["weights_int8"] = Recipe([{"pass": "quantize_weights"}])
    if const_weight_matmuls(model) and "MatMul" in ops:
        cs.recipes["int4_weights"] = Recipe([{"pass": "quantize_int4", "block_size": 32}])
    return cs


#: AdaRound settings for the default search. PP-OCRv4 det (benchmarks/compress_ppocr.py split,
#: before absorb_affine): 20 steps a block on 8 frames scored cosine 0.9919 on the search frames
#: but 0.9848 held out; 100 steps on its 13 calibration frames 0.9920 and 0.9900 (about 4 min on
#: two loaded cores)
ADAROUND_CHEAP = {"reconstruct": "adaround", "reconstruct_iters": 100, "reconstruct_frames": 16}

#: fewer foldable nodes than this: the folded recipes are not worth their search time
MIN_FOLDABLE = 8


def _add_folded(cs: CandidateSet, model: Any) -> bool:
    """``folded_*`` copies of the FP32 and static INT8 recipes, run after ``fold_affine``,
    where the model has at least :data:`MIN_FOLDABLE` constant scale/shift nodes to fold;
    whether it has."""
    counts = foldable(model)
    n = counts["after_conv"] + counts["before_conv"]
    if n < MIN_FOLDABLE:
        return False
    fold = {"pass": "fold_affine"}
    cs.recipes["folded_fp32_optimized"] = Recipe([fold, {"pass": "optimize_graph", "level": "extended"}])
    for name in ("int8_reconstructed", "static_qdq_pct_pc", "static_qop_pct_pc"):
        if name in cs.recipes:
            cs.recipes[f"folded_{name}"] = Recipe([fold, *cs.recipes[name].to_list()])
    if "int8_reconstructed" not in cs.recipes:
        return True
    if not _has_torch():
        cs.skip("folded_int8_adaround", "AdaRound needs torch (extra 'train')")
        return True
    q = {**cs.recipes["int8_reconstructed"].to_list()[0], **ADAROUND_CHEAP}
    cs.recipes["folded_int8_adaround"] = Recipe([fold, q])
    return True


def default_candidates(model_path: str | Path, target: str = "cpu", static: bool = True,
                       device: Any | None = None) -> dict[str, Recipe]:
    """The recipes of :func:`candidate_set` alone."""
    return candidate_set(model_path, target, device, static).recipes


def _fixed_shape(shape: Sequence[int]) -> tuple[str, dict[str, Any]]:
    """("input_1x3xHxW", the fix_input_shape step) for a candidate at a fixed input shape."""
    dims = [int(d) for d in shape]
    return "input_" + "x".join(str(d) for d in dims), {"pass": "fix_input_shape", "shape": dims}


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def shape_candidates(shapes: Sequence[Sequence[int]], int8: bool = True, reduce_range: bool = False,
                     types: str = "U8S8") -> dict[str, Recipe]:
    """Per fixed input shape: FP32 with ORT's graph optimization, and (``int8``) the
    reconstructed INT8 model at that shape."""
    out: dict[str, Recipe] = {}
    for shape in shapes:
        tag, fix = _fixed_shape(shape)
        out[f"{tag}_optimized"] = Recipe([fix, {"pass": "optimize_graph", "level": "extended"}])
        if int8:
            out[f"{tag}_int8_reconstructed"] = Recipe([fix, {"pass": "quantize_int8", "types": types,
                                                             "reduce_range": reduce_range}])
    return out


def sensitivity_candidates(sres: Any, keep_float_k: Sequence[int] = (1, 3), reduce_range: bool = False,
                           shapes: Sequence[Sequence[int]] = ()) -> dict[str, Recipe]:
    """Reconstructed INT8 keeping in float the output tail and the ``k`` groups of nodes whose
    float copy helped most in the sensitivity analysis (also at each fixed input shape)."""
    tail = [n for g in sres.groups if g.tail for n in g.nodes]
    ranked = [g for g in sres.groups if not g.tail and g.gain > 0]
    sets: dict[str, list[str]] = {}
    if tail:
        sets["tail"] = tail
    for k in keep_float_k:
        top = list(dict.fromkeys(n for g in ranked[:k] for n in g.nodes))   # a block and its refined nodes overlap
        if top:
            sets[f"tail_keep{k}"] = tail + top
    out: dict[str, Recipe] = {}
    for label, nodes in sets.items():
        q = {"pass": "quantize_int8", "reduce_range": reduce_range, "keep_float_nodes": nodes}
        out[f"int8_reconstructed_{label}"] = Recipe([q])
        for shape in shapes:
            tag, fix = _fixed_shape(shape)
            out[f"{tag}_int8_reconstructed_{label}"] = Recipe([fix, q])
    return out


def relu_candidates(model_path: str | Path, shapes: Sequence[Sequence[int]], steps: int = 600,
                    types: str = "U8S8", reduce_range: bool = False) -> tuple[dict[str, Recipe], str | None]:
    """INT8 of the model's ReLU student (``relu_distill`` then ``quantize_int8``) at each fixed
    input shape and at the model's own; and why there are none (fewer than
    :data:`MIN_SILU_FOR_RELU` SiLUs, or no PyTorch), else None. The fixed shapes come first:
    the student is trained once, by the first candidate built, so at the smallest input."""
    from sdk.compress.relu_swap import silu_pairs

    n = len(silu_pairs(load_model(model_path, check=False, load_external_data=False)))
    if n < MIN_SILU_FOR_RELU:
        return {}, f"the model has {n} SiLU activation(s); the ReLU student is tried from {MIN_SILU_FOR_RELU}"
    if not _has_torch():
        return {}, (f"the model has {n} SiLUs, which INT8 runs slowly here; distilling a ReLU student needs "
                    "PyTorch: pip install 'edgewise[train]'")
    distill = {"pass": "relu_distill", "steps": int(steps)}
    q = {"pass": "quantize_int8", "types": types, "reduce_range": reduce_range}
    out: dict[str, Recipe] = {}
    for shape in shapes:
        tag, fix = _fixed_shape(shape)
        out[f"{tag}_relu_int8"] = Recipe([fix, distill, q])
    out["relu_int8"] = Recipe([distill, q])
    return out, None
