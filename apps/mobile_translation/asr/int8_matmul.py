"""Run weight-only INT8 MatMuls of an ONNX graph as INT8, instead of dequantizing per run.

The onnx-community Whisper decoders (``decoder_model_merged_quantized.onnx``) compute the
logits as ``MatMul(x, DequantizeLinear(Transpose(W_uint8)))``, with the tied embedding
``W`` [vocab, d] inside both branches of the merged decoder's ``If``. onnxruntime does not
fold the outer-scope weight, so every decoding step transposes, dequantizes (80 MB of
float32 for tiny.en) and multiplies in float32: about 28 of a step's 40 ms on 2 cores.

:func:`fuse_dequantize_matmul` rewrites each such chain (per-tensor scale) into one
``com.microsoft.DynamicQuantizeMatMul`` over a transposed copy of the uint8 weight, made
once at load time: the same INT8 weights, with the activation quantized per run as the
other MatMuls of these exports already are. The file on disk is not changed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sdk.graphs import iter_graphs


def fuse_dequantize_matmul(model) -> int:
    """Rewrite ``MatMul(x, DequantizeLinear([Transpose](W)))`` in place; returns how many."""
    from onnx import helper, numpy_helper

    top = model.graph
    inits = {i.name: i for i in top.initializer}
    added: dict[str, str] = {}
    count = 0

    def rewrite(graph) -> None:
        nonlocal count
        local = {i.name: i for i in graph.initializer}

        def const(name: str):
            return local[name] if name in local else inits.get(name)

        producer = {o: n for n in graph.node for o in n.output}
        users: dict[str, int] = {}
        for n in graph.node:
            for i in n.input:
                users[i] = users.get(i, 0) + 1
        drop: set[str] = set()   # by output name (protobuf wrappers have no stable identity)
        for node in list(graph.node):
            if node.op_type != "MatMul" or len(node.input) != 2:
                continue
            dq = producer.get(node.input[1])
            if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) != 3 or users.get(dq.output[0]) != 1:
                continue
            scale, zp = const(dq.input[1]), const(dq.input[2])
            if scale is None or zp is None or len(scale.dims) or len(zp.dims):
                continue   # per-channel scales: left alone
            src, transpose = dq.input[0], producer.get(dq.input[0])
            if transpose is not None:
                perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), [1, 0])
                if transpose.op_type != "Transpose" or perm != [1, 0] or users.get(transpose.output[0]) != 1:
                    continue
                src = transpose.input[0]
            w = const(src)
            if w is None or len(w.dims) != 2 or w.data_type not in (2, 3):   # uint8, int8
                continue
            key = f"{src}|{transpose is not None}"
            if key not in added:
                arr = numpy_helper.to_array(w)
                name = f"{src}_matmul_b" if transpose is not None else src
                if transpose is not None:
                    top.initializer.append(numpy_helper.from_array(np.ascontiguousarray(arr.T), name))
                added[key] = name
            fused = helper.make_node("DynamicQuantizeMatMul", [node.input[0], added[key], dq.input[1], dq.input[2]],
                                     list(node.output), name=f"{node.name}_int8", domain="com.microsoft")
            idx = list(graph.node).index(node)
            graph.node.insert(idx, fused)
            graph.node.remove(node)
            drop.add(dq.output[0])
            if transpose is not None:
                drop.add(transpose.output[0])
            count += 1
        for n in [n for n in graph.node if n.output and n.output[0] in drop]:
            graph.node.remove(n)

    # innermost graphs first: editing an outer node list may copy the subgraphs below it
    for graph in reversed(list(iter_graphs(top))):
        rewrite(graph)
    if count and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return count


def load_fused(path: str | Path):
    """``(model, n)``: the ONNX file with :func:`fuse_dequantize_matmul` applied (``n`` rewrites)."""
    import onnx

    model = onnx.load(str(path))
    return model, fuse_dequantize_matmul(model)
