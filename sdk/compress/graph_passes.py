"""Passes that rewrite the graph without changing its numbers' precision.

* ``optimize_graph`` (:class:`OptimizeGraph`): onnxruntime's offline-optimized graph.
* ``specialize_inputs`` (:class:`SpecializeInputs`): inline the ``If`` branches chosen by
  inputs that are constant in use (a VAD's sample rate), so the quantizer sees one graph.
* ``fix_input_shape`` (:class:`FixInputShape`): fix an input's dims (rectangular frames into a
  square detector), proven by a run at the new size.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from pydantic import Field

from sdk.compress.base import Pass, PassConfig, PassContext, PassResult, register_pass
from sdk.compress.graph_prep import load_model, ort_optimize, save_model
from sdk.errors import CompressionError

__all__ = ["OptimizeGraph", "SpecializeInputs", "FixInputShape", "inline_constant_ifs"]

logger = logging.getLogger("edgewise")


@register_pass
class OptimizeGraph(Pass):
    """onnxruntime's graph optimizations (constant folding, fusions) applied offline and saved.

    ``extended`` is portable across CPUs and keeps start-up fast; ``all`` adds layout
    transformations (NCHWc) specific to the CPU it ran on, so only use it for that CPU.
    """

    name = "optimize_graph"

    class Config(PassConfig):
        level: Literal["basic", "extended", "all"] = Field(
            "extended", description="onnxruntime optimization level saved into the model: basic "
            "(constant folding, redundant nodes), extended (+ operator fusions), all (+ CPU-specific layouts)")

    config: Config  # the validated config (narrows Pass.config for the type checker)

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        load_model(model_in, check=False)
        return PassResult(ort_optimize(model_in, model_out, self.config.level))


def inline_constant_ifs(model: onnx.ModelProto, constants: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, int]:
    """Replace main-graph ``If`` nodes whose condition depends only on initializers,
    ``Constant`` nodes and the fixed-value inputs in ``constants`` by the branch taken.

    Quantizers do not reach into subgraphs; a streaming model that switches on a sample
    rate (silero VAD: ``If(sr == 16000)``) keeps all its weights there. The inputs stay
    in the signature (now unused), so callers feed the model exactly as before.
    """
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    model = onnx.ModelProto.FromString(model.SerializeToString())
    inlined = 0
    while True:
        g = model.graph
        known = {i.name for i in g.initializer} | set(constants)
        producers = {o: n for n in g.node for o in n.output}
        const_nodes = []
        for n in g.node:
            if n.op_type != "If" and all(i in known or not i for i in n.input):
                const_nodes.append(n)
                known.update(n.output)
        target = next((n for n in g.node if n.op_type == "If" and n.input[0] in known), None)
        if target is None:
            return model, inlined
        # evaluate the condition on a mini graph of its constant ancestors
        need, stack = [], [target.input[0]]
        seen: set[str] = set()
        while stack:
            t = stack.pop()
            if t in seen or t not in producers:
                continue
            seen.add(t)
            node = producers[t]
            need.append(node)
            stack.extend(node.input)
        order = [n for n in g.node if any(n is x for x in need)]
        inits = [i for i in g.initializer if i.name in {x for n in order for x in n.input}]
        consts = [numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()]
        mini = helper.make_model(helper.make_graph(order, "cond", [], [helper.make_tensor_value_info(
            target.input[0], onnx.TensorProto.BOOL, None)], initializer=inits + consts),
            opset_imports=list(model.opset_import))
        outs: Any = ReferenceEvaluator(mini).run(None, {})
        cond = bool(np.asarray(outs[0]).reshape(-1)[0])
        branch = next(a.g for a in target.attribute if a.name == ("then_branch" if cond else "else_branch"))
        main_names = {o for n in g.node for o in n.output} | {i.name for i in g.input} | {i.name for i in g.initializer}
        clash = ({o for n in branch.node for o in n.output} | {i.name for i in branch.initializer}) & main_names
        if clash:
            raise CompressionError(f"cannot inline If {target.name!r}: names {sorted(clash)[:3]} clash with the "
                                   "main graph")
        new_nodes = []
        for n in g.node:
            if n is target:
                new_nodes.extend(branch.node)
                new_nodes.extend(helper.make_node("Identity", [bo.name], [io], name=f"{target.name}_out{k}")
                                 for k, (bo, io) in enumerate(zip(branch.output, target.output, strict=True)))
            else:
                new_nodes.append(n)
        g.initializer.extend(branch.initializer)
        del g.node[:]
        g.node.extend(new_nodes)
        inlined += 1
        logger.info("inlined If %s (%s branch) for fixed inputs %s", target.name or "?",
                    "then" if cond else "else", sorted(constants))


@register_pass
class SpecializeInputs(Pass):
    """Fix the value of some inputs (e.g. a sample rate) and inline the ``If`` branches they select.

    Streaming models often branch on a configuration input; their weights then live inside
    ``If`` subgraphs, which quantizers do not touch. The inputs stay in the signature.
    """

    name = "specialize_inputs"

    class Config(PassConfig):
        constants: dict[str, float | int | list] = Field(
            ..., description="input name -> the fixed value deployments feed (e.g. {sr: 16000})")

    config: Config  # the validated config (narrows Pass.config for the type checker)

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        model = load_model(model_in)
        dtypes = {}
        from onnx.helper import tensor_dtype_to_np_dtype

        for vi in model.graph.input:
            dtypes[vi.name] = tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        missing = [k for k in self.config.constants if k not in dtypes]
        if missing:
            raise CompressionError(f"specialize_inputs: {missing} are not inputs of {Path(model_in).name} "
                                   f"(inputs: {sorted(dtypes)})")
        consts = {k: np.asarray(v, dtype=dtypes[k]) for k, v in self.config.constants.items()}
        model, n = inline_constant_ifs(model, consts)
        if n == 0:
            raise CompressionError(f"specialize_inputs: no If in {Path(model_in).name} depends only on "
                                   f"{sorted(consts)}; nothing to inline")
        return PassResult(save_model(model, model_out), {"ifs_inlined": n})


@register_pass
class FixInputShape(Pass):
    """Fix the spatial size of a shape-generic image model ("rectangular inference").

    A 16:9 camera frame letterboxed into a square 416x416 input spends ~38% of the compute on
    padding; fixing the input to 256x416 runs the same pixels for less. The output dimensions
    that depend on the input (e.g. a detector's anchor count) are left symbolic. Graphs with a
    fixed-size Reshape (which would break at another size) are refused.
    """

    name = "fix_input_shape"

    class Config(PassConfig):
        shape: list[int] = Field(..., min_length=1, description="the new input shape, e.g. [1, 3, 256, 416]")
        input: str | None = Field(None, description="which input to fix; None: the first one")

    config: Config  # the validated config (narrows Pass.config for the type checker)

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        model = load_model(model_in)
        inits = {i.name: i for i in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Reshape" and node.input[1] in inits:
                target = onnx.numpy_helper.to_array(inits[node.input[1]])
                if -1 not in target.tolist():
                    raise CompressionError(f"fix_input_shape: Reshape {node.name!r} in {Path(model_in).name} has "
                                           f"the fixed shape {target.tolist()}; the input size cannot change")
        names = [i.name for i in model.graph.input if i.name not in inits]
        name = self.config.input or names[0]
        vi = next((i for i in model.graph.input if i.name == name), None)
        if vi is None:
            raise CompressionError(f"fix_input_shape: {name!r} is not an input of {Path(model_in).name} "
                                   f"(inputs: {names})")
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != len(self.config.shape):
            raise CompressionError(f"fix_input_shape: input {name!r} has rank {len(dims)}, "
                                   f"got a shape of rank {len(self.config.shape)}: {self.config.shape}")
        for d, v in zip(dims, self.config.shape, strict=True):  # fixed dims may change too: the run below checks
            d.ClearField("dim_param")
            d.dim_value = int(v)
        for out in model.graph.output:  # let onnxruntime infer what depends on the input size
            for i, d in enumerate(out.type.tensor_type.shape.dim):
                if i > 0:
                    d.ClearField("dim_value")
                    d.dim_param = f"{out.name}_d{i}"
        del model.graph.value_info[:]
        save_model(model, model_out)
        import onnxruntime as ort  # prove the graph runs at the new size

        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        try:
            sess = ort.InferenceSession(str(model_out), providers=["CPUExecutionProvider"])
            feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape],
                                      dtype=dtype if i.name == name else np.float32)
                     for i in sess.get_inputs()}
            sess.run(None, feeds)
        except Exception as exc:
            raise CompressionError(f"fix_input_shape: {Path(model_in).name} does not run with input "
                                   f"{name!r} of shape {self.config.shape}: {exc}") from exc
        return PassResult(model_out, {"input": name, "shape": list(self.config.shape)})
