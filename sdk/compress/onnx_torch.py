"""A small ONNX -> PyTorch interpreter, so a (pruned) ONNX graph can be fine-tuned.

``onnx_to_torch(model)`` returns a module that keeps the graph as it is and runs its nodes with ``torch.nn.functional``
in ``forward``; float weights of Conv / Gemm / MatMul / BatchNormalization (scale, bias) and
PRelu become ``nn.Parameter``; every other initializer stays a constant. After training,
:func:`write_back` copies the trained values into the *same* ONNX graph, so the result has
exactly the structure onnxruntime already ran (no re-export, no exporter quirks).

Supported ops (what CNN classifiers/detectors exported from PyTorch use): Conv,
BatchNormalization (running statistics frozen), Relu, Sigmoid, Tanh, LeakyRelu, Clip,
HardSigmoid, HardSwish, PRelu, Softmax, Add, Sub, Mul, Div, Concat, MaxPool, AveragePool,
GlobalAveragePool, Flatten, Gemm, MatMul, Resize/Upsample (nearest, by scales), Slice,
Reshape, Transpose, Split, Squeeze, Unsqueeze, Identity, SpaceToDepth, Gather (constant indices),
ConvTranspose (2-D).
``module.tensor_hook(name, value)`` and ``module.param_hook(name, value)``, when set, may
replace every tensor a node produces and every trainable weight as it is read (fake
quantization for quantization-aware fine-tuning). Anything else raises
:class:`~sdk.errors.CompressionError` naming the op. torch is imported lazily (extra ``train``).
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import CompressionError, require

__all__ = ["onnx_to_torch", "write_back", "SUPPORTED_OPS"]

SUPPORTED_OPS = {
    "Conv", "BatchNormalization", "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid",
    "HardSwish", "PRelu", "Softmax", "Add", "Sub", "Mul", "Div", "Concat", "MaxPool", "AveragePool",
    "GlobalAveragePool", "Flatten", "Gemm", "MatMul", "Resize", "Upsample", "Slice", "Reshape",
    "Transpose", "Split", "Squeeze", "Unsqueeze", "Identity", "Dropout", "SpaceToDepth", "Gather", "ConvTranspose",
}
_TRAINABLE = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (0, 1), "BatchNormalization": (1, 2),
              "PRelu": (1,)}


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _key(name: str) -> str:
    return "p_" + re.sub(r"[^0-9A-Za-z_]", "_", name)


def onnx_to_torch(model: onnx.ModelProto | str, batch_free_reshape: bool = True):
    """Build a ``torch.nn.Module`` that runs ``model`` (an ONNX model or path) with torch ops."""
    torch = require("torch", "train", "fine-tuning an ONNX model")
    nn = torch.nn
    F = torch.nn.functional
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    g = model.graph
    bad = sorted({n.op_type for n in g.node} - SUPPORTED_OPS - {"Constant"})
    if bad:
        raise CompressionError(f"cannot convert ONNX ops {bad} to torch for fine-tuning; "
                               f"supported: {sorted(SUPPORTED_OPS)}")

    class OnnxModule(nn.Module):  # type: ignore[name-defined]  # torch is imported at run time (extra `train`)
        """Runs the ONNX graph node by node with torch ops; see the module docstring."""

        def __init__(self) -> None:
            super().__init__()
            self.graph = g
            self.consts: dict[str, np.ndarray] = {}
            self.param_of: dict[str, str] = {}
            trainable = {n.input[k] for n in g.node if n.op_type in _TRAINABLE
                         for k in _TRAINABLE[n.op_type] if k < len(n.input)}
            self.params = nn.ParameterDict()
            self.fixed = {}
            for init in g.initializer:
                arr = numpy_helper.to_array(init)
                self.consts[init.name] = arr
                if arr.dtype.kind == "f":
                    t = torch.from_numpy(arr.astype(np.float32).copy())
                    if init.name in trainable:
                        self.params[_key(init.name)] = nn.Parameter(t)
                        self.param_of[init.name] = _key(init.name)
                    else:
                        self.fixed[init.name] = t
            for node in g.node:
                if node.op_type == "Constant":
                    arr = numpy_helper.to_array(node.attribute[0].t)
                    self.consts[node.output[0]] = arr
                    if arr.dtype.kind == "f":
                        self.fixed[node.output[0]] = torch.from_numpy(arr.astype(np.float32).copy())
            self.nodes = [(n, _attrs(n)) for n in g.node if n.op_type != "Constant"]
            self.tensor_hook = None
            self.param_hook = None
            self.input_names = [i.name for i in g.input if i.name not in self.consts]
            self.output_names = [o.name for o in g.output]

        def _t(self, env: dict, name: str):
            if name in env:
                return env[name]
            if name in self.param_of:
                p = self.params[self.param_of[name]]
                return self.param_hook(name, p) if self.param_hook is not None else p
            if name in self.fixed:
                return self.fixed[name]
            if name in self.consts:
                return torch.from_numpy(np.array(self.consts[name]))
            raise CompressionError(f"tensor {name!r} is not produced by any node")

        def _ints(self, name: str) -> list[int]:
            if name not in self.consts:
                raise CompressionError(f"{name!r} must be a constant (initializer) for fine-tuning")
            return [int(v) for v in np.asarray(self.consts[name]).ravel()]

        def forward(self, *xs):
            env = dict(zip(self.input_names, xs, strict=True))
            hook = self.tensor_hook
            if hook is not None:
                env = {k: hook(k, v) for k, v in env.items()}
            for node, at in self.nodes:
                ins = [self._t(env, i) if i else None for i in node.input]
                outs = self._op(node, at, ins)
                for name, val in zip(node.output, outs, strict=False):
                    env[name] = hook(name, val) if hook is not None else val
            res = [env[o] for o in self.output_names]
            return res[0] if len(res) == 1 else tuple(res)

        def _op(self, node, at, ins):  # noqa: C901 - one branch per ONNX op, on purpose
            op = node.op_type
            x = ins[0]
            if op == "Conv":
                k = len(ins[1].shape) - 2
                pads = list(at.get("pads", [0] * 2 * k))
                if at.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
                    raise CompressionError(f"{node.name}: auto_pad={at['auto_pad']} not supported")
                conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[k]
                if pads[:k] != pads[k:]:
                    pp = []
                    for i in reversed(range(k)):
                        pp += [pads[i], pads[i + k]]
                    x, pads = F.pad(x, pp), [0] * 2 * k
                return [conv(x, ins[1], ins[2] if len(ins) > 2 else None,
                             stride=at.get("strides", [1] * k), padding=pads[:k],
                             dilation=at.get("dilations", [1] * k), groups=at.get("group", 1))]
            if op == "ConvTranspose":
                k = len(ins[1].shape) - 2
                pads = list(at.get("pads", [0] * 2 * k))
                if k != 2 or pads[:k] != pads[k:] or at.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") \
                        or "output_shape" in at:
                    raise CompressionError(f"{node.name}: only 2-D ConvTranspose with symmetric pads is supported")
                return [F.conv_transpose2d(x, ins[1], ins[2] if len(ins) > 2 else None,
                                           stride=at.get("strides", [1] * k), padding=pads[:k],
                                           output_padding=at.get("output_padding", [0] * k),
                                           dilation=at.get("dilations", [1] * k), groups=at.get("group", 1))]
            if op == "BatchNormalization":
                return [F.batch_norm(x, ins[3], ins[4], ins[1], ins[2], training=False,
                                     eps=at.get("epsilon", 1e-5))]
            if op in ("Relu",):
                return [F.relu(x)]
            if op == "Sigmoid":
                return [torch.sigmoid(x)]
            if op == "Tanh":
                return [torch.tanh(x)]
            if op == "LeakyRelu":
                return [F.leaky_relu(x, at.get("alpha", 0.01))]
            if op == "HardSigmoid":
                return [torch.clamp(at.get("alpha", 0.2) * x + at.get("beta", 0.5), 0, 1)]
            if op == "HardSwish":
                return [F.hardswish(x)]
            if op == "PRelu":
                return [torch.where(x >= 0, x, x * ins[1])]
            if op == "Clip":
                lo = ins[1] if len(ins) > 1 and ins[1] is not None else at.get("min")
                hi = ins[2] if len(ins) > 2 and ins[2] is not None else at.get("max")
                lo = float(lo) if lo is not None else None
                hi = float(hi) if hi is not None else None
                return [torch.clamp(x, lo, hi)]
            if op == "Softmax":
                return [torch.softmax(x, at.get("axis", -1))]
            if op in ("Add", "Sub", "Mul", "Div"):
                a, b = ins
                return [{"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}[op](a, b)]
            if op == "Concat":
                return [torch.cat(ins, at.get("axis", 1))]
            if op in ("MaxPool", "AveragePool"):
                k = at["kernel_shape"]
                pads = at.get("pads", [0] * 2 * len(k))
                if pads[:len(k)] != pads[len(k):]:
                    raise CompressionError(f"{node.name}: asymmetric pooling pads not supported")
                kw = dict(kernel_size=k, stride=at.get("strides", [1] * len(k)), padding=pads[:len(k)],
                          ceil_mode=bool(at.get("ceil_mode", 0)))
                if op == "MaxPool":
                    return [F.max_pool2d(x, **kw)]
                return [F.avg_pool2d(x, count_include_pad=bool(at.get("count_include_pad", 0)), **kw)]
            if op == "GlobalAveragePool":
                return [x.mean(dim=tuple(range(2, x.dim())), keepdim=True)]
            if op == "Flatten":
                ax = at.get("axis", 1)
                return [x.reshape(int(np.prod(x.shape[:ax])) if ax else 1, -1)]
            if op == "Gemm":
                a, b = ins[0], ins[1]
                if at.get("transA", 0):
                    a = a.t()
                if at.get("transB", 0):
                    b = b.t()
                y = at.get("alpha", 1.0) * (a @ b)
                if len(ins) > 2 and ins[2] is not None:
                    y = y + at.get("beta", 1.0) * ins[2]
                return [y]
            if op == "MatMul":
                return [torch.matmul(ins[0], ins[1])]
            if op in ("Resize", "Upsample"):
                mode = at.get("mode", "nearest")
                if op == "Resize" and len(node.input) > 3 and node.input[3]:
                    size = self._ints(node.input[3])[2:]
                    return [F.interpolate(x, size=size, mode="nearest")]
                scales_name = node.input[2] if op == "Resize" else node.input[1]
                scales = [float(s) for s in np.asarray(self.consts[scales_name]).ravel()]
                if mode != "nearest" or scales[:2] != [1.0, 1.0]:
                    raise CompressionError(f"{node.name}: only nearest spatial resizing is supported")
                if at.get("coordinate_transformation_mode", "asymmetric") != "asymmetric":
                    raise CompressionError(f"{node.name}: only asymmetric nearest resizing is supported")
                return [F.interpolate(x, scale_factor=scales[2:], mode="nearest")]
            if op == "Slice":
                starts, ends = self._ints(node.input[1]), self._ints(node.input[2])
                axes = self._ints(node.input[3]) if len(node.input) > 3 and node.input[3] \
                    else list(range(len(starts)))
                steps = self._ints(node.input[4]) if len(node.input) > 4 and node.input[4] \
                    else [1] * len(starts)
                idx = [slice(None)] * x.dim()
                for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
                    if st < 1:
                        raise CompressionError(f"{node.name}: negative Slice steps not supported")
                    n = x.shape[a]
                    idx[a] = slice(max(-n, min(s, n)), max(-n, min(e, n)), st)
                return [x[tuple(idx)]]
            if op == "Reshape":
                shape = self._ints(node.input[1])
                shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
                if batch_free_reshape and shape and shape[0] == 1 and x.shape[0] != 1:
                    shape[0] = x.shape[0]   # graphs exported at batch 1 hard-code it
                return [x.reshape(shape)]
            if op == "Transpose":
                return [x.permute(*at.get("perm", list(reversed(range(x.dim())))))]
            if op == "Split":
                ax = at.get("axis", 0)
                split = at.get("split") or (self._ints(node.input[1]) if len(node.input) > 1 and node.input[1]
                                            else None)
                if split is None:
                    n = len(node.output)
                    split = [x.shape[ax] // n] * n
                return list(torch.split(x, list(split), dim=ax))
            if op == "Squeeze":
                axes = at.get("axes") or (self._ints(node.input[1]) if len(node.input) > 1 else None)
                if axes is None:
                    return [x.squeeze()]
                for a in sorted((a % x.dim() for a in axes), reverse=True):
                    x = x.squeeze(a)
                return [x]
            if op == "Unsqueeze":
                axes = at.get("axes") or self._ints(node.input[1])
                r = x.dim() + len(axes)
                for a in sorted(a % r for a in axes):
                    x = x.unsqueeze(a)
                return [x]
            if op in ("Identity", "Dropout"):
                return [x]
            if op == "SpaceToDepth":
                b = int(at["blocksize"])
                n, c, h, w = x.shape
                y = x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
                return [y.reshape(n, c * b * b, h // b, w // b)]
            if op == "Gather":
                idx = np.asarray(self.consts[node.input[1]]) if node.input[1] in self.consts else None
                if idx is None:
                    raise CompressionError(f"{node.name}: Gather needs constant indices for fine-tuning")
                axis = int(at.get("axis", 0))
                axis = axis if axis >= 0 else x.dim() + axis
                flat = torch.from_numpy(np.where(idx < 0, idx + x.shape[axis], idx).astype(np.int64).ravel())
                y = torch.index_select(x, axis, flat)
                return [y.reshape(*x.shape[:axis], *idx.shape, *x.shape[axis + 1:])]
            raise CompressionError(f"{node.name}: op {op} not supported")

    return OnnxModule()


def write_back(module, model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of ``model`` with the trainable initializers replaced by ``module``'s values."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        key = module.param_of.get(init.name)
        if key is None:
            continue
        arr = module.params[key].detach().cpu().numpy()
        dtype = numpy_helper.to_array(init).dtype
        init.CopyFrom(numpy_helper.from_array(arr.astype(dtype), init.name))
    return out
