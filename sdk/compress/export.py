"""Export a trained torch module to ONNX and check that onnxruntime agrees with torch.

torch 2.13 still ships the TorchScript-based exporter (``dynamo=False``), which needs no
extra packages; the dynamo exporter needs ``onnxscript``, so it is used only when asked
(``dynamo=True``) or when the legacy one is gone.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import CompressionError, require

logger = logging.getLogger("edgewise")

__all__ = ["export_onnx"]


def export_onnx(module, example_input: np.ndarray, path: str | Path, opset: int = 17,
                input_names: Sequence[str] = ("input",), output_names: Sequence[str] = ("logits",),
                dynamic_batch: bool = True, verify: bool = True, atol: float = 1e-4,
                dynamo: bool = False) -> Path:
    """Write ``module`` as ONNX at ``path``; with ``verify``, run it in onnxruntime on
    ``example_input`` and raise :class:`~sdk.errors.CompressionError` if any output differs
    from torch's by more than ``atol`` (absolute, scaled by max(1, |torch output|max))."""
    torch = require("torch", "train", "exporting a model to ONNX")
    x = np.asarray(example_input)
    if x.dtype.kind == "f":
        x = x.astype(np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    module.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x))
    kw = dict(input_names=list(input_names), output_names=list(output_names), opset_version=opset)
    try:
        if not dynamo:
            axes = {n: {0: "batch"} for n in list(input_names) + list(output_names)} if dynamic_batch else None
            torch.onnx.export(module, (xt,), str(path), dynamo=False, dynamic_axes=axes,
                              do_constant_folding=True, **kw)
        else:
            shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
            torch.onnx.export(module, (xt,), str(path), dynamo=True, dynamic_shapes=shapes,
                              external_data=False, **kw)
    except Exception as exc:  # noqa: BLE001 - exporter errors come in many types
        raise CompressionError(f"torch.onnx.export failed for {type(module).__name__}: {exc}") from exc
    finally:
        module.train(was_training)
    if verify:
        import onnxruntime as ort

        with torch.no_grad():
            ref = module.eval()(xt)
        module.train(was_training)
        refs = [ref] if isinstance(ref, torch.Tensor) else list(ref)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outs = sess.run(None, {sess.get_inputs()[0].name: x})
        for name, r, o in zip(output_names, refs, outs, strict=False):
            r = r.detach().cpu().numpy()
            err = float(np.abs(r - o).max()) if r.size else 0.0
            if r.shape != o.shape or err > atol * max(1.0, float(np.abs(r).max())):
                raise CompressionError(f"exported ONNX output {name!r} differs from torch: "
                                       f"shape {o.shape} vs {r.shape}, max abs diff {err:.3g} > {atol}")
        logger.info("exported %s to %s (opset %s), onnxruntime matches torch", type(module).__name__,
                    path, opset)
    return path
