"""Does a quantized model suit this CPU? The INT8 weight check the :class:`~sdk.runtime.Engine`
runs at load.

On x86 without VNNI, onnxruntime's integer kernels multiply u8 activations by s8 weights in
pairs summed into int16 (``vpmaddubsw``): with weight codes past 64 the sum can overflow and
the output is silently wrong (seen here: errors of 0.97 on outputs of ~1). Models quantized
with ``reduce_range`` (7-bit weights, what :mod:`sdk.compress.quantize` picks on such a CPU)
cannot overflow; a model quantized with 8-bit weights on a VNNI machine and shipped to one
without VNNI can. :func:`int8_weight_peak` reads the largest weight code the integer kernels
will see; :func:`saturation_warning` says, for a given CPU, whether that is a problem.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from sdk.graphs import initializer_map, iter_graphs
from sdk.runtime.isa import isa_profile, needs_reduce_range

__all__ = ["int8_weight_peak", "saturation_warning", "SAFE_PEAK", "MAY_HOLD_INT8_WEIGHTS"]

SAFE_PEAK = 64   # 255 * 64 * 2 = 32640 fits int16; 255 * 65 * 2 does not

# the weight input of each integer kernel; QDQ weights are int8 DequantizeLinear inputs read by these
_WEIGHT_INPUT = {"QLinearConv": 3, "QLinearMatMul": 3, "ConvInteger": 1, "MatMulInteger": 1}
_MATMUL_LIKE = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
# bytes any model with such weights holds (op types are stored as plain strings): a cheap pre-filter
MAY_HOLD_INT8_WEIGHTS = (b"DequantizeLinear", b"QLinearConv", b"QLinearMatMul", b"ConvInteger", b"MatMulInteger")


def _weight_names(model: onnx.ModelProto) -> set[str]:
    names: set[str] = set()
    for g in iter_graphs(model.graph):
        readers: dict[str, set[str]] = {}
        for n in g.node:
            for i in n.input:
                readers.setdefault(i, set()).add(n.op_type)
        for n in g.node:
            if n.op_type in _WEIGHT_INPUT and len(n.input) > _WEIGHT_INPUT[n.op_type]:
                names.add(n.input[_WEIGHT_INPUT[n.op_type]])
            elif n.op_type == "DequantizeLinear" and n.input and readers.get(n.output[0], set()) & _MATMUL_LIKE:
                names.add(n.input[0])
    return names


def int8_weight_peak(model: onnx.ModelProto) -> int | None:
    """The largest |code| among the int8 weights onnxruntime's integer kernels read, or None
    when the model has none (FP32, int4 MatMulNBits, uint8 weights). Weights held in external
    files that were not loaded are not read."""
    inits = initializer_map(model)
    peak: int | None = None
    for name in _weight_names(model):
        hit = inits.get(name)
        if hit is None or hit[1].data_type != onnx.TensorProto.INT8:
            continue
        t = hit[1]
        if t.data_location == onnx.TensorProto.EXTERNAL:
            continue
        w = numpy_helper.to_array(t)
        if w.size:
            p = int(np.abs(w.astype(np.int16)).max())
            peak = p if peak is None else max(peak, p)
    return peak


def saturation_warning(model: onnx.ModelProto, device: Any) -> str | None:
    """A sentence saying why ``model`` may compute wrong results on ``device`` (a
    :class:`~sdk.runtime.DeviceInfo`), or None when it cannot overflow there."""
    profile = isa_profile(device)
    if not needs_reduce_range(profile):
        return None
    peak = int8_weight_peak(model)
    if peak is None or peak <= SAFE_PEAK:
        return None
    return (f"INT8 weights use codes up to {peak}, but this CPU has no VNNI ({profile}): onnxruntime sums "
            f"u8 x s8 pairs in int16 there, which overflows past {SAFE_PEAK}, so outputs may be off (how much "
            f"depends on the model and the data: measure it, e.g. edgewise optimize's report). "
            f"Quantize again on this machine (edgewise optimize, or quantize_int8 with reduce_range=True "
            f"for 7-bit weights), or run on a CPU with VNNI")
