"""CPU profiles (:func:`isa_profile`) and what follows from one for INT8 weights
(:func:`needs_reduce_range`): the compression search plans its candidates by them
(:mod:`sdk.compress.candidates` says what each profile changes, and why) and the
:class:`~sdk.runtime.Engine` checks at load that a quantized model suits this CPU
(:mod:`sdk.runtime.int8_weights`)."""
from __future__ import annotations

from typing import Any

__all__ = ["isa_profile", "needs_reduce_range"]


def isa_profile(device: Any | None) -> str:
    """"vnni" (x86 with VNNI/AMX), "avx2" (x86 without VNNI), "arm", or "unknown"."""
    if device is None:
        return "unknown"
    isa = dict(getattr(device, "isa", {}) or {})
    machine = str(getattr(device, "machine", "")).lower()
    if isa.get("neon") or machine in ("arm64", "aarch64"):
        return "arm"
    if isa.get("avx512_vnni") or isa.get("avx_vnni") or isa.get("amx"):
        return "vnni"
    if isa.get("avx2") or isa.get("avx512f"):
        return "avx2"
    return "unknown"


def needs_reduce_range(profile: str) -> bool:
    """Whether INT8 weights must be 7-bit (``reduce_range``) on a CPU of this :func:`isa_profile`:
    on x86 without VNNI onnxruntime multiplies u8 x s8 pairs into int16 (``vpmaddubsw``), and
    two products of 255 x 127 overflow it; with |weight code| <= 64 they cannot."""
    return profile == "avx2"
