"""Weight-only INT4 (``MatMulNBits``) and FP16 conversion passes.

INT4 packs each constant 2-D MatMul weight into blocks of ``block_size`` values along K
with one scale (and, when asymmetric, one 4-bit zero point) per block, using onnxruntime's
own kernel (``quantize_matmul_4bits``, the routine behind
``onnxruntime.quantization.matmul_nbits_quantizer``; that module needs the extra package
``onnx_ir`` and configures the root logger on import, so the same packing is done here
directly). FP16 converts weights and compute to float16 and keeps float32 inputs/outputs.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from pydantic import Field

from sdk.compress.base import Pass, PassConfig, PassContext, PassResult, register_pass
from sdk.compress.graph_prep import load_model, save_model
from sdk.compress.quantize import verify_loadable
from sdk.errors import CompressionError
from sdk.graphs import (
    drop_unused,
    initializer_map,
    iter_graphs,
    iter_scoped,
)

logger = logging.getLogger("edgewise")


def quantize_weight_4bit(w: np.ndarray, block_size: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[K, N] float32 -> (packed uint8 [N, k_blocks, block_size/2], scales [N*k_blocks], zero points)."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    k, n = w.shape
    k_blocks = (k + block_size - 1) // block_size
    pad = k_blocks * block_size - k
    if pad:
        w = np.pad(w, ((0, pad), (0, 0)))
    w = np.ascontiguousarray(w, dtype=np.float32)
    packed = np.zeros((n, k_blocks, block_size // 2), dtype=np.uint8)
    zero_points = np.zeros((n, (k_blocks + 1) // 2), dtype=np.uint8)
    scales = np.zeros((n, k_blocks), dtype=np.float32)
    quantize_matmul_4bits(packed, w, scales, zero_points, block_size, n, k, symmetric)
    return packed, scales, zero_points


@register_pass
class QuantizeInt4(Pass):
    """Weight-only INT4 for MatMuls with constant weights (transformer projections, MLPs).

    Activations stay float; weights shrink ~7x. Convolutions are left alone. MatMuls inside
    ``If`` / ``Loop`` subgraphs are quantized too (Optimum's merged decoder keeps both of its
    decoders in the branches of one If); a weight both branches share is packed once.
    """

    name = "quantize_int4"

    class Config(PassConfig):
        block_size: int = Field(32, description="weights per quantization block along K (power of two, >= 16)")
        symmetric: bool = Field(True, description="symmetric blocks (no zero point) instead of asymmetric")
        accuracy_level: int = Field(0, ge=0, le=4, description="MatMulNBits compute precision hint "
                                    "(0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8)")
        nodes_to_exclude: list[str] = Field(default_factory=list, description="MatMul node names kept in float")
        min_k: int = Field(32, ge=1, description="skip MatMuls whose K (input features) is smaller than this")
        int8_embeddings: bool = Field(False, description="also store constant tables read by Gather (token "
                                      "embeddings) as int8 per tensor, dequantized after the Gather")

    config: Config  # the validated config (narrows Pass.config for the type checker)

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        cfg = self.config
        bs = cfg.block_size
        if bs < 16 or bs & (bs - 1):
            raise CompressionError(f"quantize_int4: block_size must be a power of two >= 16, got {bs}")
        model = load_model(model_in)
        inits = initializer_map(model)
        packed_of: dict[str, list[str]] = {}   # weight -> its packed initializers (shared by If branches)
        done = 0
        for graph, producer in iter_scoped(model.graph):   # the main graph and every If / Loop body
            for node in graph.node:
                w = _const_weight(node, producer, inits) if node.name not in cfg.nodes_to_exclude else None
                if w is None or w[1].shape[0] < cfg.min_k:
                    continue
                key, arr, owner = w
                k, n = arr.shape
                if key not in packed_of:
                    packed_of[key] = self._pack(arr, key, owner, len(packed_of))
                attrs = {"K": k, "N": n, "bits": 4, "block_size": bs}
                if cfg.accuracy_level:
                    attrs["accuracy_level"] = cfg.accuracy_level
                # in place: copying the graph's node list would detach the subgraphs still to visit
                node.CopyFrom(helper.make_node("MatMulNBits", [node.input[0], *packed_of[key]],
                                               list(node.output), name=(node.name or key) + "_Q4",
                                               domain="com.microsoft", **attrs))
                done += 1
        if not done:
            raise CompressionError(f"quantize_int4: {Path(model_in).name} has no MatMul with a constant 2-D float "
                                   f"weight of K >= {cfg.min_k} (expected transformer/MLP MatMuls), in its main "
                                   f"graph or its subgraphs")
        report: dict = {"matmuls": done, "block_size": bs}
        if cfg.int8_embeddings:
            report["int8_embeddings"] = _int8_gathers(model, inits)
        drop_unused(model)     # float weights no MatMul or Gather reads any more
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        logger.info("quantize_int4: %d MatMul(s) -> MatMulNBits (%d weights, block %d)", done, len(packed_of), bs)
        save_model(model, model_out)
        return PassResult(verify_loadable(Path(model_out), "quantize_int4"), report)

    def _pack(self, w: np.ndarray, key: str, owner: onnx.GraphProto, index: int) -> list[str]:
        """Pack one weight into ``owner`` (the graph holding it, visible to its subgraphs)."""
        cfg = self.config
        packed, scales, zp = quantize_weight_4bit(w, cfg.block_size, cfg.symmetric)
        base = key.replace(":", "_") + f"_int4_{index}"
        owner.initializer.extend([numpy_helper.from_array(packed, base + "_Q4"),
                                  numpy_helper.from_array(scales.reshape(-1), base + "_scales")])
        names = [base + "_Q4", base + "_scales"]
        if not cfg.symmetric:
            owner.initializer.append(numpy_helper.from_array(zp.reshape(-1), base + "_zp"))
            names.append(base + "_zp")
        return names


def _int8_gathers(model: onnx.ModelProto, inits: dict) -> int:
    """Gather(float table, ids) -> DequantizeLinear(Gather(int8 table, ids)), per-tensor symmetric
    (the layout onnxruntime's INT8 quantizer gives embeddings); returns how many Gathers."""
    made: dict[str, tuple[str, str, str]] = {}
    done = 0
    for graph in iter_graphs(model.graph):   # lazy: a rebuilt list is walked on from its new nodes
        nodes, changed = [], False
        for node in graph.node:
            nodes.append(node)
            if node.op_type != "Gather" or node.input[0] not in inits:
                continue
            owner, table = inits[node.input[0]]
            if table.data_type != onnx.TensorProto.FLOAT or len(table.dims) != 2:
                continue
            if table.name not in made:
                w = numpy_helper.to_array(table)
                scale = np.float32(max(float(np.abs(w).max()), 1e-12) / 127.0)
                q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
                names = (table.name + "_int8", table.name + "_int8_scale", table.name + "_int8_zp")
                owner.initializer.extend([numpy_helper.from_array(q, names[0]),
                                          numpy_helper.from_array(np.array(scale, np.float32), names[1]),
                                          numpy_helper.from_array(np.array(0, np.int8), names[2])])
                made[table.name] = names
            q_name, s_name, z_name = made[table.name]
            out = node.output[0]
            gather = helper.make_node("Gather", [q_name, node.input[1]], [out + "_int8"], name=node.name + "_int8")
            gather.attribute.extend(node.attribute)
            nodes[-1] = gather
            nodes.append(helper.make_node("DequantizeLinear", [out + "_int8", s_name, z_name], [out],
                                          name=node.name + "_dequantize"))
            changed = True
            done += 1
        if changed:
            del graph.node[:]
            graph.node.extend(nodes)
    return done


def _const_weight(node: onnx.NodeProto, producer: dict, inits: dict) -> tuple[str, np.ndarray, onnx.GraphProto] | None:
    """(key, [K, N] float32 weight, graph holding it) of a MatMul on a constant 2-D float weight:
    an initializer, or a ``Transpose`` of one (a tied output projection reading the embedding
    table, as Whisper's ``proj_out``; the table itself stays for its ``Gather``)."""
    if node.op_type != "MatMul" or len(node.input) != 2:
        return None
    name, transpose = node.input[1], False
    if name not in inits:
        t = producer.get(name)
        perm = next((list(a.ints) for a in t.attribute if a.name == "perm"), [1, 0]) if t is not None else None
        if t is None or t.op_type != "Transpose" or t.input[0] not in inits or perm != [1, 0]:
            return None
        name, transpose = t.input[0], True
    owner, init = inits[name]
    if len(init.dims) != 2 or init.data_type != onnx.TensorProto.FLOAT:
        return None
    arr = numpy_helper.to_array(init)
    return ("T:" + name, np.ascontiguousarray(arr.T), owner) if transpose else (name, arr, owner)


@register_pass
class ConvertFP16(Pass):
    """Float16 weights and compute with float32 inputs/outputs kept (halves the size).

    On CPUs without native fp16 arithmetic onnxruntime inserts casts or falls back, so this
    is a *size* recipe there, not a speed one.
    """

    name = "fp16"

    class Config(PassConfig):
        op_block_list: list[str] | None = Field(None, description="op types kept in float32 (None: "
                                                "onnxruntime's default list of fp16-unsafe ops)")
        node_block_list: list[str] = Field(default_factory=list, description="node names kept in float32")
        keep_io_types: bool = Field(True, description="keep float32 graph inputs and outputs (casts at the edges)")

    config: Config  # the validated config (narrows Pass.config for the type checker)

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        cfg = self.config
        model = load_model(model_in)
        try:
            kwargs = dict(keep_io_types=cfg.keep_io_types, node_block_list=list(cfg.node_block_list) or None)
            if cfg.op_block_list is not None:
                kwargs["op_block_list"] = list(cfg.op_block_list)
            converted = convert_float_to_float16(model, **kwargs)
        except Exception as exc:
            raise CompressionError(f"fp16 conversion failed on {Path(model_in).name}: {exc}") from exc
        save_model(converted, model_out)
        return PassResult(verify_loadable(Path(model_out), "fp16"))
