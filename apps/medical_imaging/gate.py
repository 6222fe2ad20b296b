"""Quality and compatibility gate: decide, before and around the model, whether a study can
be analysed at all. Every refusal is a :class:`GateResult` with a human-readable reason;
the study is then ``not_analysed`` (priority ``review``), never reported as normal.

Order: header checks (modality, body part, photometric interpretation, size) happen before
any pixel is decoded; pixel checks (finite values, colour, blank/constant, under- and
over-exposure) after decoding; the out-of-distribution check after the model, on its
penultimate features (:mod:`apps.medical_imaging.ood`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from apps.medical_imaging.io.loaders import Decoded, Header


class Accepts(BaseModel):
    """What a bundle's model accepts (``manifest.extra["accepts"]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    modalities: list[str] = Field(description="DICOM Modality values, plus 'image' for PNG/JPEG/TIFF")
    body_parts: list[str] = Field(description="accepted BodyPartExamined values (checked when present)")
    photometric: list[str] = Field(["MONOCHROME1", "MONOCHROME2"], description="accepted photometric interpretations")
    min_side: int = Field(28, gt=0, description="smallest accepted image side, pixels")


class Quality(BaseModel):
    """Pixel-level quality limits (``manifest.extra["quality"]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_std: float = Field(0.01, description="below this pixel std (0..1 scale) the image is blank")
    dark_level: float = Field(3 / 255, description="pixels at or below this count as clipped black")
    bright_level: float = Field(252 / 255, description="pixels at or above this count as clipped white")
    max_dark_fraction: float = Field(0.5, description="more clipped-black pixels than this: under-exposed")
    max_bright_fraction: float = Field(0.5, description="more clipped-white pixels than this: over-exposed")


@dataclass(frozen=True)
class GateResult:
    ok: bool
    reason: str = ""


PASS = GateResult(True)


def _dicom_list(values: list[str]) -> str:
    return ", ".join(v for v in values if v != "image") or "none"


def check_header(hdr: Header, accepts: Accepts) -> GateResult:
    """Compatibility checks that need no pixels."""
    if hdr.kind == "dicom":
        if hdr.modality not in accepts.modalities:
            return GateResult(False, f"modality {hdr.modality} not accepted by model "
                                     f"(accepts {_dicom_list(accepts.modalities)})")
        if hdr.body_part and hdr.body_part not in accepts.body_parts:
            return GateResult(False, f"body part {hdr.body_part} not accepted by model "
                                     f"(accepts {', '.join(accepts.body_parts)})")
        if (hdr.photometric or "").upper() not in accepts.photometric:
            return GateResult(False, f"photometric interpretation {hdr.photometric} not accepted "
                                     f"(accepts {', '.join(accepts.photometric)})")
    elif "image" not in accepts.modalities:
        return GateResult(False, f"plain {hdr.kind.upper()} images not accepted by model "
                                 f"(accepts DICOM {_dicom_list(accepts.modalities)})")
    if min(hdr.width, hdr.height) < accepts.min_side:
        return GateResult(False, f"image {hdr.width}x{hdr.height} is smaller than the minimum "
                                 f"{accepts.min_side}x{accepts.min_side}")
    return PASS


def check_frame(frame: np.ndarray, q: Quality) -> GateResult:
    """Pixel checks on one gray frame in [0, 1]."""
    if not np.isfinite(frame).all():
        bad = int((~np.isfinite(frame)).sum())
        return GateResult(False, f"{bad} pixel value(s) are not finite (NaN/Inf) after decoding")
    std = float(frame.std())
    if std < q.min_std:
        return GateResult(False, f"constant or blank image (pixel std {std:.4f} < {q.min_std})")
    dark = float((frame <= q.dark_level).mean())
    if dark > q.max_dark_fraction:
        return GateResult(False, f"under-exposed: {dark:.0%} of pixels clipped black "
                                 f"(limit {q.max_dark_fraction:.0%})")
    bright = float((frame >= q.bright_level).mean())
    if bright > q.max_bright_fraction:
        return GateResult(False, f"over-exposed: {bright:.0%} of pixels clipped white "
                                 f"(limit {q.max_bright_fraction:.0%})")
    return PASS


def check_pixels(dec: Decoded, q: Quality) -> GateResult:
    if dec.colour:
        return GateResult(False, "colour image: the model accepts grayscale radiographs only")
    if not dec.frames:
        return GateResult(False, "no frame could be decoded")
    for i, f in enumerate(dec.frames):
        r = check_frame(f, q)
        if not r.ok:
            return GateResult(False, r.reason if len(dec.frames) == 1 else f"frame {i}: {r.reason}")
    return PASS


def check_ood(score: float, threshold: float) -> GateResult:
    if not np.isfinite(score) or score > threshold:
        return GateResult(False, f"out of distribution: feature distance {score:.2f} above {threshold:.2f} "
                                 "(image unlike the training data)")
    return PASS
