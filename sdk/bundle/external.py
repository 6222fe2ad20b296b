"""Safety checks on ONNX files inside a bundle, done with ``onnx`` before onnxruntime runs.

A tensor stored as external data names a file through its ``location`` key, which
onnxruntime opens relative to the model's folder. A hostile model can point that at
``/etc/shadow``, at ``../../secrets`` or at a symlink; :func:`check_external_data` refuses
all of those, and any location not pinned in the manifest's ``files``.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Iterator

from sdk.bundle.paths import relpath_problem, resolve_inside
from sdk.errors import BundleError, UnsafePathError


def _graph_tensors(graph) -> Iterator:
    import onnx

    yield from graph.initializer
    for sp in graph.sparse_initializer:
        yield sp.values
        yield sp.indices
    for node in graph.node:
        yield from _node_tensors(node, onnx)


def _node_tensors(node, onnx) -> Iterator:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.TENSOR:
            yield attr.t
        elif attr.type == onnx.AttributeProto.TENSORS:
            yield from attr.tensors
        elif attr.type == onnx.AttributeProto.SPARSE_TENSOR:
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        elif attr.type == onnx.AttributeProto.GRAPH:
            yield from _graph_tensors(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            for g in attr.graphs:
                yield from _graph_tensors(g)


def iter_tensors(model) -> Iterator:
    """Every TensorProto of a ModelProto: initializers, constants, subgraphs, functions."""
    import onnx

    yield from _graph_tensors(model.graph)
    for fn in model.functions:
        for node in fn.node:
            yield from _node_tensors(node, onnx)


def load_model_proto(path: Path, rel: str):
    """Parse an ONNX file without touching external data; BundleError if it does not parse."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning...
        raise BundleError(f"model {rel!r} is not a valid ONNX file: {type(exc).__name__}: {exc}") from exc


def check_external_data(root: Path, rel: str, model, files: dict[str, str]) -> list[str]:
    """Check every external-data location of ``model`` (bundle file ``rel``).

    Returns the bundle-relative paths it uses. Raises :class:`UnsafePathError` naming the
    model, the tensor and the location for an absolute path, a ``..``, a symlink, an escape
    from the bundle or a file the manifest does not list; :class:`BundleError` for a
    missing location or a range past the end of the file.
    """
    import onnx

    model_dir = PurePosixPath(rel).parent
    used: list[str] = []
    for t in iter_tensors(model):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location")
        where = f"model {rel!r}, tensor {t.name!r}, external data location {loc!r}"
        if not loc:
            raise BundleError(f"model {rel!r}, tensor {t.name!r}: external data without a 'location'")
        problem = relpath_problem(loc)
        if problem:
            raise UnsafePathError(f"{where} refused because {problem}")
        target = str(model_dir / loc) if str(model_dir) != "." else loc
        path = resolve_inside(root, target, what=where)
        if target not in files:
            raise UnsafePathError(f"{where} refused because {target!r} is not listed in the manifest's 'files'")
        if not path.is_file():
            raise BundleError(f"{where}: file {target!r} is missing")
        size = os.path.getsize(path)
        offset, length = int(info.get("offset", 0) or 0), info.get("length")
        if offset > size or (length is not None and offset + int(length) > size):
            raise BundleError(f"{where}: offset {offset} + length {length} is past the end of {target!r} "
                              f"({size} bytes)")
        if target not in used:
            used.append(target)
    return used
