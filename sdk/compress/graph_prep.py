"""Graph preparation shared by the quantization passes, and the ``optimize_graph`` pass.

* :func:`load_model` reads and checks a model file, turning a truncated or tampered file
  into :class:`~sdk.errors.ModelLoadError` that names it.
* :func:`upgrade_opset` converts a model to a newer opset with ``onnx.version_converter``
  (per-channel ``DequantizeLinear`` needs its ``axis`` attribute, which exists from opset 13).
* :func:`prepare_for_quantization` runs onnxruntime's ``quant_pre_process`` (symbolic shape
  inference, graph optimization, ONNX shape inference), falling back to plain ONNX shape
  inference where the symbolic pass cannot handle a model, and gives every node a name
  (``nodes_to_exclude`` refers to nodes by name).
* :class:`OptimizeGraph` saves onnxruntime's offline-optimized graph at a chosen level.
"""
from __future__ import annotations

import contextlib
import os
import logging
from pathlib import Path
from typing import Iterable, Literal

import onnx
from pydantic import Field

from sdk.compress.base import Pass, PassConfig, PassContext, PassResult, register_pass
from sdk.errors import CompressionError, ModelLoadError

logger = logging.getLogger("edgewise")

PRE_PROCESS_KEY = "onnx.quant.pre_process"
#: the first opset where DequantizeLinear takes ``axis`` (per-channel scales)
PER_CHANNEL_MIN_OPSET = 13


def load_model(path: str | Path, *, check: bool = True, load_external_data: bool = True) -> onnx.ModelProto:
    """Load an ONNX model file; ModelLoadError naming the file when it is not a valid model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf DecodeError, truncated external data, ...
        raise ModelLoadError(f"{path.name}: not a readable ONNX model ({type(exc).__name__}: {exc}); "
                             "the file may be truncated or corrupt") from exc
    if check:
        try:
            onnx.checker.check_model(str(path))
        except Exception as exc:
            raise ModelLoadError(f"{path.name}: the ONNX checker refused the model ({exc})") from exc
    if len(model.graph.node) == 0:
        raise ModelLoadError(f"{path.name}: the model has no nodes (expected an ONNX graph, got an empty one)")
    return model


def save_model(model: onnx.ModelProto, path: str | Path) -> Path:
    """Save a model, with external data when it is too large for one protobuf (>1.8 GB)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    large = model.ByteSize() > 1_800_000_000
    onnx.save(model, str(path), save_as_external_data=large,
              location=path.name + ".data" if large else None)
    return path


def opset_version(model: onnx.ModelProto) -> int:
    """The default-domain opset of a model."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


def op_types(model: onnx.ModelProto) -> set[str]:
    """Every op type used in the main graph and its subgraphs."""
    found: set[str] = set()

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            found.add(node.op_type)
            for attr in node.attribute:
                if attr.g and attr.g.node:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return found


def const_weight_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of MatMul nodes (main graph) whose second input is a 2-D constant initializer."""
    inits = {i.name: i for i in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]].dims) == 2]


def ensure_node_names(model: onnx.ModelProto) -> int:
    """Give every unnamed main-graph node a stable unique name; returns how many were named."""
    used = {n.name for n in model.graph.node if n.name}
    named = 0
    for i, node in enumerate(model.graph.node):
        if not node.name:
            base = f"{node.op_type}_{i}"
            name, k = base, 0
            while name in used:
                k += 1
                name = f"{base}_{k}"
            node.name = name
            used.add(name)
            named += 1
    return named


def constants_to_initializers(model: onnx.ModelProto) -> int:
    """Turn main-graph ``Constant`` nodes holding a tensor into initializers (same values,
    same names); returns how many. Exporters such as paddle2onnx (PP-OCR) keep every weight in
    a Constant node, which weight quantizers, looking for initializers, would not see."""
    keep, moved = [], 0
    for node in model.graph.node:
        attr = node.attribute[0] if node.op_type == "Constant" and len(node.attribute) == 1 else None
        if node.domain in ("", "ai.onnx") and attr is not None and attr.name == "value" and len(node.output) == 1:
            t = onnx.TensorProto()
            t.CopyFrom(attr.t)
            t.name = node.output[0]
            model.graph.initializer.append(t)
            moved += 1
        else:
            keep.append(node)
    if moved:
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return moved


def is_preprocessed(model: onnx.ModelProto) -> bool:
    return any(p.key == PRE_PROCESS_KEY for p in model.metadata_props)


def convert_opset(model: onnx.ModelProto, target: int, what: str = "the model") -> onnx.ModelProto:
    """The model with its default-domain opset raised to ``target`` (itself when already there)."""
    current = opset_version(model)
    if current >= target:
        return model
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, target)
    except Exception as exc:
        raise CompressionError(f"{what}: could not upgrade opset {current} -> {target} "
                               f"with onnx.version_converter ({exc})") from exc
    # The converter keeps ir_version; some targets need a newer one.
    converted.ir_version = max(converted.ir_version, 7)
    logger.info("upgraded %s from opset %s to %s", what, current, target)
    return converted


def upgrade_opset(model_in: str | Path, model_out: str | Path, target: int = PER_CHANNEL_MIN_OPSET) -> Path:
    """Convert the model's default-domain opset up to ``target`` (no-op copy when already there)."""
    return save_model(convert_opset(load_model(model_in, check=False), target, Path(model_in).name), model_out)


@contextlib.contextmanager
def _inside(folder: Path):
    """Run with ``folder`` as the working directory, removing onnxruntime's scratch files."""
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)
        for junk in folder.glob("sym_shape_infer_temp.onnx*"):
            junk.unlink(missing_ok=True)


def prepare_for_quantization(model_in: str | Path, model_out: str | Path, *, min_opset: int | None = None,
                             optimize: bool = True) -> Path:
    """Opset upgrade (when ``min_opset`` asks for it), ORT pre-processing, node names.

    The result carries onnxruntime's pre-processing mark, so running it twice is cheap.
    """
    # absolute before anything changes the working directory (``_inside`` below does): a
    # relative input path would otherwise be looked up inside the output's folder
    model_in, model_out = Path(model_in).resolve(), Path(model_out).resolve()
    src = load_model(model_in, check=False)
    work = model_out.with_name(model_out.stem + ".opset.onnx")
    if min_opset and opset_version(src) < min_opset:
        upgrade_opset(model_in, work, min_opset)
        model_in = work
    elif is_preprocessed(src):
        ensure_node_names(src)
        return save_model(src, model_out)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    attempts = [dict(skip_optimization=not optimize), dict(skip_optimization=not optimize, skip_symbolic_shape=True),
                dict(skip_optimization=True, skip_symbolic_shape=True)]
    last: Exception | None = None
    for kwargs in attempts:
        try:
            # onnxruntime's symbolic shape inference may drop "sym_shape_infer_temp.onnx"
            # into the current directory; keep it in the output's folder and remove it.
            with _inside(model_out.parent):
                quant_pre_process(str(model_in.resolve()), str(model_out.resolve()), **kwargs)
            last = None
            break
        except Exception as exc:  # symbolic shape inference fails on some control flow
            logger.debug("quant_pre_process %s failed (%s); retrying with fewer steps", kwargs, exc)
            last = exc
    if last is not None:
        logger.warning("onnxruntime pre-processing failed on %s (%s); using ONNX shape inference only",
                       model_in.name, last)
        model = onnx.shape_inference.infer_shapes(load_model(model_in, check=False))
        from onnxruntime.quantization.quant_utils import add_pre_process_metadata

        add_pre_process_metadata(model)
    else:
        model = load_model(model_out, check=False)
    ensure_node_names(model)
    save_model(model, model_out)
    if work.exists():
        work.unlink()
    return model_out


_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
           "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def ort_optimize(model_in: str | Path, model_out: str | Path, level: str = "extended",
                 providers: Iterable[str] = ("CPUExecutionProvider",)) -> Path:
    """Let onnxruntime optimize the graph and save the result (offline optimization)."""
    import onnxruntime as ort

    model_out = Path(model_out)
    model_out.parent.mkdir(parents=True, exist_ok=True)
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[level])
    so.optimized_model_filepath = str(model_out)
    try:
        ort.InferenceSession(str(model_in), so, providers=list(providers))
    except Exception as exc:
        raise ModelLoadError(f"{Path(model_in).name}: onnxruntime could not load the model ({exc})") from exc
    return model_out


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

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        load_model(model_in, check=False)
        return PassResult(ort_optimize(model_in, model_out, self.config.level))


def inline_constant_ifs(model: onnx.ModelProto, constants: dict[str, "np.ndarray"]) -> tuple[onnx.ModelProto, int]:
    """Replace main-graph ``If`` nodes whose condition depends only on initializers,
    ``Constant`` nodes and the fixed-value inputs in ``constants`` by the branch taken.

    Quantizers do not reach into subgraphs; a streaming model that switches on a sample
    rate (silero VAD: ``If(sr == 16000)``) keeps all its weights there. The inputs stay
    in the signature (now unused), so callers feed the model exactly as before.
    """
    import numpy as np
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
        cond = bool(np.asarray(ReferenceEvaluator(mini).run(None, {})[0]).reshape(-1)[0])
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
                                 for k, (bo, io) in enumerate(zip(branch.output, target.output)))
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

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        import numpy as np

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

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        import numpy as np

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
        for d, v in zip(dims, self.config.shape):  # fixed dims may change too: the run below checks
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
