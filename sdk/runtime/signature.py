"""Model signatures: :class:`TensorSpec` and the cheap per-call input check.

Everything the check needs (numpy dtype, rank, fixed dims) is computed once when the
engine is built, so a call costs a few attribute reads per input.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sdk.errors import InputValidationError

# onnxruntime's "tensor(x)" element types -> numpy dtype names.
ORT_TO_NUMPY = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(bfloat16)": "bfloat16", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
    "tensor(int16)": "int16", "tensor(uint16)": "uint16", "tensor(int32)": "int32",
    "tensor(uint32)": "uint32", "tensor(int64)": "int64", "tensor(uint64)": "uint64",
    "tensor(bool)": "bool", "tensor(string)": "str",
}
# onnx TensorProto element type numbers -> numpy dtype names.
ONNX_ELEM_TO_NUMPY = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
                      7: "int64", 8: "str", 9: "bool", 10: "float16", 11: "float64",
                      12: "uint32", 13: "uint64", 16: "bfloat16"}

Dim = int | str | None


class TensorSpec(BaseModel):
    """Name, element type and shape of one model input or output.

    ``dtype`` is a numpy dtype name ("float32", "int64", "str" for strings); ``shape`` holds an
    int for a fixed dim, a str for a named dynamic dim ("batch") and None for an unnamed one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    dtype: str
    shape: list[Dim] = Field(default_factory=list)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_dynamic(self) -> bool:
        return any(not isinstance(d, int) for d in self.shape)

    def shape_str(self) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype}{self.shape_str()}"

    @classmethod
    def from_ort(cls, node_arg: Any) -> "TensorSpec":
        """Build from an onnxruntime ``NodeArg`` (``session.get_inputs()[i]``)."""
        shape = node_arg.shape if isinstance(node_arg.shape, (list, tuple)) else []
        dims: list[Dim] = []
        for d in shape:
            if isinstance(d, int) and d >= 0:
                dims.append(int(d))
            elif isinstance(d, str) and d:
                dims.append(d)
            else:
                dims.append(None)
        return cls(name=node_arg.name, dtype=ORT_TO_NUMPY.get(node_arg.type, node_arg.type), shape=dims)

    @classmethod
    def from_value_info(cls, vi: Any) -> "TensorSpec":
        """Build from an ``onnx.ValueInfoProto`` (graph input/output)."""
        tt = vi.type.tensor_type
        dims: list[Dim] = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param") and d.dim_param:
                dims.append(d.dim_param)
            else:
                dims.append(None)
        return cls(name=vi.name, dtype=ONNX_ELEM_TO_NUMPY.get(tt.elem_type, f"elem_type_{tt.elem_type}"),
                   shape=dims)


def read_signature(model: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an ONNX model (path or ``ModelProto``) read with ``onnx``,
    without starting onnxruntime. Initializers listed as graph inputs are left out."""
    import onnx

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    inits = {t.name for t in proto.graph.initializer}
    ins = [TensorSpec.from_value_info(v) for v in proto.graph.input if v.name not in inits]
    outs = [TensorSpec.from_value_info(v) for v in proto.graph.output]
    return ins, outs


def _fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class _InputCheck:
    """Precomputed expectations for one input."""

    __slots__ = ("name", "dtype", "rank", "fixed", "spec", "is_str", "is_float")

    def __init__(self, spec: TensorSpec):
        self.spec = spec
        self.name = spec.name
        self.is_str = spec.dtype == "str"
        try:
            self.dtype = None if self.is_str else np.dtype(spec.dtype)
        except TypeError:  # bfloat16, float8...: numpy has no such dtype; do not check it
            self.dtype = None
        self.rank = spec.rank
        self.fixed = tuple((i, d) for i, d in enumerate(spec.shape) if isinstance(d, int))
        self.is_float = self.dtype is not None and self.dtype.kind == "f"

    def error(self, x: np.ndarray, why: str) -> InputValidationError:
        return InputValidationError(
            f"input '{self.name}' expects {self.spec.dtype} with shape {self.spec.shape_str()}, "
            f"got {x.dtype} with shape {_fmt_shape(x.shape)} ({why})")

    def check(self, x: Any) -> np.ndarray:
        if type(x) is not np.ndarray:
            if not isinstance(x, np.ndarray):
                if isinstance(x, (list, tuple, int, float, bool)) or np.isscalar(x):
                    x = np.asarray(x)
                else:
                    raise InputValidationError(
                        f"input '{self.name}' expects a numpy array ({self.spec.dtype} with shape "
                        f"{self.spec.shape_str()}), got {type(x).__name__}")
        if self.dtype is not None and x.dtype != self.dtype:
            raise self.error(x, f"dtype {x.dtype} is not {self.dtype}; convert with .astype(np.{self.dtype})")
        if self.is_str and x.dtype.kind not in "UOS":
            raise self.error(x, "expected strings")
        if x.ndim != self.rank:
            raise self.error(x, f"rank {x.ndim} is not {self.rank}")
        shape = x.shape
        for i, d in self.fixed:
            if shape[i] != d:
                raise self.error(x, f"dim {i} is {shape[i]}, not {d}")
        return x


class InputValidator:
    """Checks a feed dict against a model's inputs; built once per engine."""

    def __init__(self, inputs: Sequence[TensorSpec]):
        self.checks = [_InputCheck(s) for s in inputs]
        self.names = [c.name for c in self.checks]
        self._n = len(self.checks)

    def validate(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        out = {}
        for c in self.checks:
            try:
                x = feeds[c.name]
            except KeyError:
                raise self._missing(feeds, c.name) from None
            out[c.name] = c.check(x)
        if len(feeds) != self._n:
            unknown = sorted(set(feeds) - set(self.names))
            raise InputValidationError(
                f"unknown input name(s) {unknown}; the model's inputs are {self.names}")
        return out

    def validate_list(self, arrays: Sequence[Any]) -> dict[str, np.ndarray]:
        if len(arrays) != self._n:
            raise InputValidationError(
                f"expected {self._n} input array(s) in the order {self.names}, got {len(arrays)}")
        out = {}
        i = 0
        for c in self.checks:
            out[c.name] = c.check(arrays[i])
            i += 1
        return out

    def _missing(self, feeds: Mapping[str, Any], name: str) -> InputValidationError:
        missing = [n for n in self.names if n not in feeds]
        unknown = sorted(set(map(str, feeds)) - set(self.names))
        extra = f"; unknown: {unknown}" if unknown else ""
        return InputValidationError(
            f"missing input(s) {missing}; the model's inputs are {self.names}{extra}")


def check_finite_inputs(feeds: Mapping[str, np.ndarray]) -> None:
    for name, x in feeds.items():
        if x.dtype.kind in "fc" and not np.isfinite(x).all():
            bad = int(x.size - np.count_nonzero(np.isfinite(x)))
            raise InputValidationError(
                f"input '{name}' expects finite values, got {bad} NaN/Inf value(s) of {x.size}")
