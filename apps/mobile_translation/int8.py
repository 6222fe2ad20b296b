"""INT8 copies of a neural engine's ONNX files, made with the compression toolkit.

Dynamic quantization (``sdk.compress.QuantizeDynamic``: weights INT8 offline, activations
at run time) of the MatMul/Gemm weights, which hold nearly all of a transformer's bytes.
Each ``X.onnx`` gets a sibling ``X_int8.onnx``; engines pick them with ``quantized=True``
(``--int8`` on the command line).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from apps.mobile_translation.onnx_files import decoder_files, resolve_model_dir


def quantize_export(model: str | Path, store=None, force: bool = False) -> dict[str, str]:
    """Quantize the encoder and decoder(s) of an export folder or pulled model; {src: dst}."""
    from sdk.compress import QuantizeDynamic
    from sdk.compress.base import PassContext

    folder = resolve_model_dir(model, store=store)
    done: dict[str, str] = {}
    # EnableSubgraph: the merged decoder keeps its two decoders inside an If node
    qpass = QuantizeDynamic(op_types_to_quantize=["MatMul", "Gemm"], preprocess=False,
                            extra_options={"EnableSubgraph": True})
    for src in decoder_files(folder, quantized=False).values():
        dst = src.with_name(src.stem + "_int8.onnx")
        if dst.is_file() and not force:
            done[str(src)] = str(dst)
            continue
        with tempfile.TemporaryDirectory() as work:
            qpass.run(src, dst, PassContext(work_dir=Path(work)))
        done[str(src)] = str(dst)
    return done
