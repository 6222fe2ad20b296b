"""INT8 and INT4 copies of a neural engine's ONNX files, made with the compression toolkit.

* ``bits=8``: dynamic quantization (``sdk.compress.QuantizeDynamic``: weights INT8 offline,
  activations at run time) of the MatMul/Gemm weights, which hold nearly all of a
  transformer's bytes. ``X.onnx`` -> ``X_int8.onnx``; engines pick them with
  ``quantized=True`` (``--int8``).
* ``bits=4``: weight-only INT4 (``sdk.compress.QuantizeInt4``, onnxruntime's
  ``MatMulNBits``; activations stay float) of every MatMul with a constant weight, inside the
  merged decoder's ``If`` branches too. ``X.onnx`` -> ``X_int4.onnx``; engines pick them with
  ``quantized="int4"`` (``--int4``). Embedding tables (read by ``Gather``) are stored int8.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from apps.mobile_translation.onnx_files import (
    decoder_files,
    find_onnx,
    resolve_model_dir,
)
from sdk.errors import CompressionError, ModelLoadError

logger = logging.getLogger("edgewise")

SUFFIX = {8: "_int8", 4: "_int4"}


def quantize_export(model: str | Path, store=None, force: bool = False, bits: int = 8,
                    block_size: int = 32, accuracy_level: int = 0) -> dict[str, str]:
    """Quantize the encoder and decoder(s) of an export folder or pulled model; {src: dst}.

    ``block_size`` / ``accuracy_level``: of the INT4 blocks (see ``QuantizeInt4``).
    """
    from sdk.compress import QuantizeDynamic, QuantizeInt4
    from sdk.compress.base import PassContext

    if bits not in SUFFIX:
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    folder = resolve_model_dir(model, store=store)
    if find_onnx(folder, "encoder_model", quantized=False) is None and \
            find_onnx(folder, "encoder_model", quantized=True) is not None:
        names = ", ".join(sorted(p.name for p in folder.rglob("*.onnx")))
        raise ModelLoadError(f"{folder} holds only quantized files ({names}): "
                             "`translate quantize` makes copies of fp32 exports, and the engines use INT8-only "
                             "folders as shipped; sdk.compress.dequantize rebuilds a float reference from them")
    if bits == 8:
        # EnableSubgraph: the merged decoder keeps its two decoders inside an If node
        qpass = QuantizeDynamic(op_types_to_quantize=["MatMul", "Gemm"], preprocess=False,
                                extra_options={"EnableSubgraph": True})
    else:
        qpass = QuantizeInt4(block_size=block_size, accuracy_level=accuracy_level, min_k=block_size,
                             int8_embeddings=True)
    done: dict[str, str] = {}
    for src in decoder_files(folder, quantized=False).values():
        dst = src.with_name(src.stem + SUFFIX[bits] + ".onnx")
        if dst.is_file() and not force:
            done[str(src)] = str(dst)
            continue
        with tempfile.TemporaryDirectory() as work:
            try:
                qpass.run(src, dst, PassContext(work_dir=Path(work)))
            except CompressionError as exc:
                if bits == 8:
                    raise
                # no MatMul weight to pack (an encoder of convolutions only): the engine still
                # needs an _int4 file beside the others, so it is the float one unchanged
                logger.warning("%s: %s; copied unchanged to %s", src.name, exc, dst.name)
                shutil.copyfile(src, dst)
        done[str(src)] = str(dst)
    return done
