"""Graph preparation shared by the passes: loading, saving, opsets, quantization pre-processing.

* :func:`load_model` reads and checks a model file, turning a truncated or tampered file
  into :class:`~sdk.errors.ModelLoadError` that names it.
* :func:`upgrade_opset` converts a model to a newer opset with ``onnx.version_converter``
  (per-channel ``DequantizeLinear`` needs its ``axis`` attribute, which exists from opset 13).
* :func:`prepare_for_quantization` runs onnxruntime's ``quant_pre_process`` (symbolic shape
  inference, graph optimization, ONNX shape inference), falling back to plain ONNX shape
  inference where the symbolic pass cannot handle a model, and gives every node a name
  (``nodes_to_exclude`` refers to nodes by name).
* :func:`ort_optimize` saves onnxruntime's offline-optimized graph at a chosen level.

The graph passes built on these (``optimize_graph``, ``specialize_inputs``,
``fix_input_shape``) are in :mod:`sdk.compress.graph_passes`.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterable

import onnx

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
