"""Weight-only INT8: store Conv/Gemm/MatMul weights as int8 with per-channel scales.

Activations stay in float, so accuracy stays close to FP32 where full INT8 does not
(YOLOX-nano's objectness collapses under activation quantization), while the shipped file
shrinks about 4x. Each weight becomes an int8 initializer feeding a ``DequantizeLinear``
(opset >= 13 for per-axis scales); onnxruntime dequantizes it once when it folds constants,
so inference runs the float kernels at float speed. This is a size recipe, not a speed one.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from onnx import helper, numpy_helper
from pydantic import Field

from sdk.compress.base import Pass, PassConfig, PassContext, register_pass
from sdk.compress.graph_prep import load_model, opset_version, save_model, upgrade_opset
from sdk.compress.quantize import verify_loadable

logger = logging.getLogger("edgewise")

# op type -> (index of the weight input, axis of the output channels in that weight)
_WEIGHT_INPUTS = {"Conv": (1, 0), "ConvTranspose": (1, 1), "Gemm": (1, None), "MatMul": (1, 1)}


def quantize_per_axis(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 with one scale per slice along ``axis`` (a single scale when None)."""
    if axis is None:
        scale = np.asarray(max(float(np.abs(w).max()), 1e-12) / 127.0, dtype=np.float32)
        return np.clip(np.rint(w / scale), -127, 127).astype(np.int8), scale
    reduce = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.maximum(np.abs(w).max(axis=reduce), 1e-12).astype(np.float32)
    scale = (amax / 127.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


@register_pass
class QuantizeWeightsInt8(Pass):
    """Store the weights of Conv/Gemm/MatMul as per-channel int8 (activations stay float)."""

    name = "quantize_weights_int8"

    class Config(PassConfig):
        op_types: list[str] = Field(["Conv", "ConvTranspose", "Gemm", "MatMul"],
                                    description="operators whose constant weight is stored as int8")
        per_channel: bool = Field(True, description="one scale per output channel (else one per tensor)")
        min_elements: int = Field(64, ge=1, description="leave smaller weights in float (scales would cost more)")
        exclude: list[str] = Field(default_factory=list, description="node names to leave untouched")

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> Path:
        if opset_version(load_model(model_in, check=False, load_external_data=False)) < 13:
            model_in = upgrade_opset(model_in, Path(model_out).with_suffix(".opset13.onnx"), 13)
        model = load_model(model_in)
        inits = {i.name: i for i in model.graph.initializer}
        consumers: dict[str, int] = {}
        for node in model.graph.node:
            for name in node.input:
                consumers[name] = consumers.get(name, 0) + 1
        done: dict[str, str] = {}
        new_nodes = []
        for node in model.graph.node:
            spec = _WEIGHT_INPUTS.get(node.op_type)
            if spec is None or node.op_type not in self.config.op_types or node.name in self.config.exclude:
                continue
            idx, axis = spec
            if len(node.input) <= idx or node.input[idx] not in inits:
                continue
            wname = node.input[idx]
            if wname in done:
                node.input[idx] = done[wname]
                continue
            w = numpy_helper.to_array(inits[wname])
            if w.dtype != np.float32 or w.size < self.config.min_elements:
                continue
            if node.op_type == "Gemm":
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                axis = 0 if trans_b else 1
            if not self.config.per_channel or w.ndim < 2:
                axis = None
            q, scale = quantize_per_axis(w, axis)
            base = wname.replace("/", "_")
            qname, sname, zname, dname = (f"{base}_i8", f"{base}_scale", f"{base}_zp", f"{base}_dq")
            model.graph.initializer.extend([
                numpy_helper.from_array(q, qname), numpy_helper.from_array(scale, sname),
                numpy_helper.from_array(np.zeros(scale.shape, np.int8), zname)])
            attrs = {"axis": axis} if axis is not None else {}
            new_nodes.append(helper.make_node("DequantizeLinear", [qname, sname, zname], [dname],
                                              name=f"{base}_DequantizeLinear", **attrs))
            node.input[idx] = dname
            done[wname] = dname
        if not done:
            logger.warning("quantize_weights_int8: no weight of %s found in %s", self.config.op_types,
                           Path(model_in).name)
        still_used = {n for node in model.graph.node for n in node.input}
        keep = [i for i in model.graph.initializer if i.name in still_used or i.name not in done]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
        # DequantizeLinear nodes first: they only read initializers, so topological order holds
        nodes = new_nodes + list(model.graph.node)
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        ctx.extra["quantize_weights_int8"] = {"weights": len(done)}
        save_model(model, model_out)
        verify_loadable(model_out, self.name)
        return Path(model_out)
