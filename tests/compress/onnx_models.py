"""Saving the small hand-built ONNX graphs the compress tests make."""
from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper


def save_graph(graph: onnx.GraphProto, path: Path, opset: int = 13, ir_version: int = 7) -> Path:
    """``graph`` as a model (default opset, IR ``ir_version``) saved at ``path``; returns ``path``."""
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    onnx.save(m, str(path))
    return path
