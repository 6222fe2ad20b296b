"""Static model statistics: size (with external data), parameters, FLOPs, op histogram.

FLOPs count 2 per multiply-accumulate of Conv / ConvTranspose / Gemm / MatMul (and their
quantized forms) after onnx shape inference; bias adds and element-wise ops are not
counted. ``flops`` is None when any counted op has a shape inference could not resolve
(pass ``input_shapes`` to fix dynamic dims). Parameters are the elements of weight-typed
initializers (float, float16, bfloat16, int8/uint8, int4/uint4); int32/int64 initializers
are shapes and indices, not weights. Constant nodes holding weight-typed tensors count too.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from sdk.errors import ModelLoadError
from sdk.runtime.signature import TensorSpec

# TensorProto element types counted as parameters
_WEIGHT_TYPES = {1, 2, 3, 10, 11, 16, 21, 22}  # float, uint8, int8, float16, double, bfloat16, uint4, int4
# op -> (index of the data input, index of the weight input)
_CONV_OPS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3), "ConvTranspose": (0, 1)}
_MATMUL_OPS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "Gemm": (0, 1)}


class ModelStats(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = None
    size_bytes: int = Field(description="the .onnx file plus its external data files")
    params: int
    flops: int | None = Field(description="2 x MACs of Conv/Gemm/MatMul; None if a shape is unknown")
    flops_by_op: dict[str, int] = Field(default_factory=dict)
    unresolved_ops: int = Field(0, description="counted ops whose FLOPs could not be computed")
    op_histogram: dict[str, int] = Field(default_factory=dict)
    node_count: int = 0
    opset: int | None = None
    opsets: dict[str, int] = Field(default_factory=dict)
    ir_version: int | None = None
    producer: str = ""
    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)


def _prod(xs: Iterable[int]) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


def _walk_nodes(graph: Any, depth: int = 0) -> Iterable[tuple[Any, int]]:
    """(node, depth) for every node, descending into If/Loop/Scan subgraphs (depth > 0)."""
    for node in graph.node:
        yield node, depth
        for attr in node.attribute:
            if attr.type == attr.GRAPH:
                yield from _walk_nodes(attr.g, depth + 1)
            elif attr.type == attr.GRAPHS:
                for g in attr.graphs:
                    yield from _walk_nodes(g, depth + 1)


def _constant_params(graph: Any) -> int:
    """Weight elements held in Constant nodes (some exporters, e.g. paddle2onnx, use them)."""
    n = 0
    for node, _ in _walk_nodes(graph):
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for a in node.attribute:
                if a.name == "value" and a.t.data_type in _WEIGHT_TYPES:
                    n += _prod(a.t.dims)
    return n


def _shapes(graph: Any) -> dict[str, list[int] | None]:
    """Fully known shapes by value name (None if any dim is symbolic)."""
    out: dict[str, list[int] | None] = {}

    def add(vi: Any) -> None:
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            out.setdefault(vi.name, None)
            return
        dims = vi.type.tensor_type.shape.dim
        out[vi.name] = [int(d.dim_value) for d in dims] if all(d.HasField("dim_value") for d in dims) else None

    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        add(vi)
    for t in graph.initializer:
        out[t.name] = [int(d) for d in t.dims]
    return out


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _node_flops(node: Any, shapes: Mapping[str, list[int] | None]) -> int | None:
    def shape(i: int) -> list[int] | None:
        return shapes.get(node.input[i]) if i < len(node.input) and node.input[i] else None

    if node.op_type in _CONV_OPS:
        xi, wi = _CONV_OPS[node.op_type]
        w = shape(wi)
        y = shapes.get(node.output[0])
        x = shape(xi)
        if w is None or len(w) < 3:
            return None
        k = _prod(w[2:])
        if node.op_type == "ConvTranspose":
            # each input pixel scatters Cin x (Cout/group) x k products
            if x is None:
                return None
            return 2 * _prod(x) * w[1] * k  # x = N*Cin*spatial; w = [Cin, Cout/g, k...]
        if y is None:
            return None
        return 2 * _prod(y) * w[1] * k  # y = N*Cout*spatial; w = [Cout, Cin/g, k...]
    if node.op_type in _MATMUL_OPS:
        ai, bi = _MATMUL_OPS[node.op_type]
        a, b = shape(ai), shape(bi)
        if a is None or b is None:
            return None
        if node.op_type == "Gemm":
            m = a[1] if _attr(node, "transA", 0) else a[0]
            kk = a[0] if _attr(node, "transA", 0) else a[1]
            n = b[0] if _attr(node, "transB", 0) else b[1]
            return 2 * m * kk * n
        y = shapes.get(node.output[0])
        a2 = a if len(a) >= 2 else [1] + a
        kk = a2[-1]
        if y is not None:
            return 2 * _prod(y) * kk
        b2 = b if len(b) >= 2 else b + [1]
        batch = _prod(a2[:-2]) if len(a2) > 2 else 1
        batch = max(batch, _prod(b2[:-2]) if len(b2) > 2 else 1)
        return 2 * batch * a2[-2] * kk * b2[-1]
    return None


def _fix_input_shapes(model: Any, input_shapes: Mapping[str, Sequence[int]]) -> None:
    by_name = {vi.name: vi for vi in model.graph.input}
    for name, shape in input_shapes.items():
        vi = by_name.get(name)
        if vi is None:
            raise ValueError(f"input_shapes names {name!r} but the model's inputs are {list(by_name)}")
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise ValueError(f"input {name!r} has rank {len(dims)}, input_shapes gives {list(shape)}")
        for d, v in zip(dims, shape, strict=True):
            d.ClearField("dim_param")
            d.dim_value = int(v)


def _external_size(model: Any, base: Path) -> int:
    locations = set()
    for t in model.graph.initializer:
        if t.data_location == 1:  # EXTERNAL
            for kv in t.external_data:
                if kv.key == "location":
                    locations.add(kv.value)
    total = 0
    for loc in locations:
        p = (base / loc)
        try:
            total += p.stat().st_size
        except OSError:
            pass
    return total


def model_file_size(path: str | Path) -> int:
    """Bytes of an ONNX file plus the external-data files it names (0 for those missing)."""
    import onnx

    path = Path(path)
    total = path.stat().st_size
    try:
        total += _external_size(onnx.load(str(path), load_external_data=False), path.parent)
    except Exception:  # noqa: BLE001 - an unreadable file counts as its own bytes
        pass
    return total


def _load_small_int_tensors(model: Any, base: Path, limit: int = 1 << 16) -> None:
    """Load int32/int64 external initializers (shape targets) so shape inference can use
    them; weights stay on disk. Locations that are absolute or climb out are left alone."""
    from onnx.external_data_helper import load_external_data_for_tensor

    for t in model.graph.initializer:
        if t.data_location != 1 or t.data_type not in (6, 7) or _prod(t.dims) * 8 > limit:
            continue
        loc = next((kv.value for kv in t.external_data if kv.key == "location"), "")
        if not loc or Path(loc).is_absolute() or ".." in Path(loc).parts:
            continue
        try:
            load_external_data_for_tensor(t, str(base))
            t.data_location = 0
            del t.external_data[:]
        except Exception:  # a missing data file: the shape stays unknown
            continue


def model_stats(model: str | Path | Any, input_shapes: Mapping[str, Sequence[int]] | None = None) -> ModelStats:
    """Size, parameters, FLOPs and op histogram of an ONNX model (path or ModelProto).

    ``input_shapes`` fixes dynamic input dims (e.g. ``{"x": [1, 3, 640, 640]}``) before shape
    inference so FLOPs can be computed for that input size.
    """
    import onnx
    from onnx import shape_inference

    path: Path | None = None
    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
        size = proto.ByteSize()
    else:
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # DecodeError and friends from protobuf
            raise ModelLoadError(f"cannot read ONNX model {path}: {exc}") from exc
        size = path.stat().st_size + _external_size(proto, path.parent)
        _load_small_int_tensors(proto, path.parent)
    if proto.ir_version == 0 or not (proto.graph.node or proto.graph.output):
        where = path if path else "the given ModelProto"
        raise ModelLoadError(f"{where} is not an ONNX model: expected a ModelProto with an IR version "
                             f"and a graph, got ir_version={proto.ir_version} and "
                             f"{len(proto.graph.node)} node(s)")
    inits = {t.name for t in proto.graph.initializer}
    inputs = [TensorSpec.from_value_info(v) for v in proto.graph.input if v.name not in inits]
    outputs = [TensorSpec.from_value_info(v) for v in proto.graph.output]
    params = sum(_prod(t.dims) for t in proto.graph.initializer if t.data_type in _WEIGHT_TYPES)
    params += _constant_params(proto.graph)
    if input_shapes:
        _fix_input_shapes(proto, input_shapes)
    try:
        inferred = shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except Exception:  # an op onnx does not know, or a bad model: FLOPs stay unknown
        inferred = proto
    shapes = _shapes(inferred.graph)
    hist: Counter[str] = Counter()
    by_op: Counter[str] = Counter()
    unresolved = 0
    for node, depth in _walk_nodes(inferred.graph):
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        hist[key] += 1
        if node.op_type in _CONV_OPS or node.op_type in _MATMUL_OPS:
            f = _node_flops(node, shapes) if depth == 0 else None  # subgraph shapes are not tracked
            if f is None:
                unresolved += 1
            else:
                by_op[node.op_type] += f
    opsets = {(o.domain or "ai.onnx"): int(o.version) for o in proto.opset_import}
    return ModelStats(
        path=str(path) if path else None, size_bytes=int(size), params=int(params),
        flops=None if unresolved else int(sum(by_op.values())), flops_by_op=dict(by_op),
        unresolved_ops=unresolved, op_histogram=dict(hist.most_common()),
        node_count=sum(hist.values()), opset=opsets.get("ai.onnx"), opsets=opsets,
        ir_version=int(proto.ir_version),
        producer=" ".join(x for x in (proto.producer_name, proto.producer_version) if x),
        inputs=inputs, outputs=outputs)
