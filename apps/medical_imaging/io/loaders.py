"""Read a study file in two steps: :func:`read_header` (cheap, no pixel decoding) and
:func:`decode` (pixels -> gray float32 frames in [0, 1], ready for the quality gate).

Raster files (PNG/JPEG/TIFF) are decoded by OpenCV after the header parser has checked
their size; DICOM by pydicom (extra ``dicom``, imported here only), with pylibjpeg for
compressed transfer syntaxes. DICOM value pipeline: Modality LUT (rescale slope/intercept,
or a Modality LUT sequence) -> VOI (VOI LUT sequence, else window centre/width, else the
0.5-99.5 percentile range) -> MONOCHROME1 inverted so that bright means dense, like the
training images. Multi-frame objects give one frame per analysed frame (at most
``Limits.max_frames``, evenly spaced); the triage keeps the most suspicious one.

Raster bit depth: 8-bit images are taken as display images (value / 255, like the
training data); 16-bit and float images are scaled by their 0.5-99.5 percentile range
(a 12-bit detector image in a 16-bit PNG would otherwise look black).
"""
from __future__ import annotations

import io as _io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from apps.medical_imaging.io.headers import check_jpeg_complete, check_png_complete, probe_raster, sniff
from apps.medical_imaging.io.safe_read import read_regular_file
from sdk.errors import DecodeError, require

# DICOM attributes that identify a patient: never written out unless the user asks.
IDENTIFIER_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
                       "OtherPatientIDs", "PatientAddress", "AccessionNumber", "InstitutionName",
                       "ReferringPhysicianName", "StudyDate", "StudyTime", "StudyID")


class Limits(BaseModel):
    """Refusal limits applied before decoding."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_pixels: int = Field(50_000_000, gt=0, description="width x height x frames above which a file is refused")
    max_file_bytes: int = Field(1 << 30, gt=0, description="files larger than this are refused unread")
    max_frames: int = Field(16, gt=0, description="frames of a multi-frame object analysed (evenly spaced)")


@dataclass
class Header:
    """What is known about a file before its pixels are decoded."""

    path: Path
    kind: str                      # png | jpeg | tiff | dicom
    data: bytes = field(repr=False)
    sha256: str
    width: int
    height: int
    frames: int = 1
    channels: int | None = None
    modality: str = "image"        # DICOM Modality, or "image" for plain raster files
    body_part: str | None = None
    photometric: str | None = None
    uid: str | None = None         # SOPInstanceUID
    identifiers: dict[str, str] = field(default_factory=dict)
    dataset: object = field(default=None, repr=False)   # pydicom Dataset without pixels

    @property
    def pixels(self) -> int:
        return self.width * self.height * self.frames


@dataclass
class Decoded:
    frames: list[np.ndarray]       # gray float32 (H, W), nominally in [0, 1] (NaN kept for the gate)
    colour: bool = False           # the source had distinct colour channels
    notes: list[str] = field(default_factory=list)


def read_header(path: str | Path, limits: Limits | None = None) -> Header:
    """Read the file once and parse its header; refuse oversize claims before any decoding.

    Only a regular file (or a symlink to one) is read, and never more than
    ``limits.max_file_bytes``: FIFOs, devices, sockets, unreadable and oversize files are
    refused with a reason (see :mod:`apps.medical_imaging.io.safe_read`).
    Raises FileNotFoundError (file gone), DecodeError (unreadable, truncated, refused).
    """
    import hashlib

    limits = limits or Limits()
    path = Path(path)
    data = read_regular_file(path, limits.max_file_bytes)
    sha = hashlib.sha256(data).hexdigest()
    kind = sniff(data) or ("dicom" if path.suffix.lower() in (".dcm", ".dicom") or _looks_dicom(data) else None)
    if kind is None:
        raise DecodeError(f"unrecognised file format (first bytes {data[:8]!r}); "
                          "expected PNG, JPEG, TIFF or DICOM")
    if kind == "dicom":
        hdr = _dicom_header(path, data, sha)
    else:
        r = probe_raster(data, kind)
        hdr = Header(path=path, kind=kind, data=data, sha256=sha, width=r.width, height=r.height,
                     channels=r.channels)
    if hdr.width <= 0 or hdr.height <= 0:
        raise DecodeError(f"header gives an empty image ({hdr.width} x {hdr.height})")
    if hdr.pixels > limits.max_pixels:
        raise DecodeError(f"header claims {hdr.width} x {hdr.height} x {hdr.frames} frame(s) = "
                          f"{hdr.pixels} pixels, above the limit of {limits.max_pixels}; refused before decoding")
    return hdr


def _looks_dicom(data: bytes) -> bool:
    # No preamble: a DICOM stream usually starts with group 0x0008 or 0x0002 (little endian).
    return data[:2] in (b"\x08\x00", b"\x02\x00") and len(data) > 132


def _dicom_header(path: Path, data: bytes, sha: str) -> Header:
    pydicom = require("pydicom", "dicom", "reading DICOM files")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(_io.BytesIO(data), stop_before_pixels=True, force=True)
            rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            ident = {k: str(ds.get(k)) for k in IDENTIFIER_KEYWORDS if ds.get(k) not in (None, "")}
            hdr = Header(path=path, kind="dicom", data=data, sha256=sha, width=cols, height=rows,
                         frames=max(frames, 1), channels=int(ds.get("SamplesPerPixel", 1) or 1),
                         modality=str(ds.get("Modality", "") or "unknown").upper(),
                         body_part=(str(ds.get("BodyPartExamined")).upper() if ds.get("BodyPartExamined") else None),
                         photometric=str(ds.get("PhotometricInterpretation", "") or "") or None,
                         uid=str(ds.get("SOPInstanceUID")) if ds.get("SOPInstanceUID") else None,
                         identifiers=ident, dataset=ds)
    except DecodeError:
        raise
    except Exception as exc:  # pydicom raises many types on malformed input
        raise DecodeError(f"unreadable DICOM header: {type(exc).__name__}: {exc}") from exc
    if rows == 0 or cols == 0:
        raise DecodeError("DICOM has no image (Rows/Columns missing): not an image object")
    return hdr


def decode(hdr: Header, limits: Limits | None = None) -> Decoded:
    """Decode the pixels of a file whose header passed the gate."""
    limits = limits or Limits()
    if hdr.kind == "dicom":
        return _decode_dicom(hdr, limits)
    if hdr.kind == "png":
        check_png_complete(hdr.data)
    elif hdr.kind == "jpeg":
        check_jpeg_complete(hdr.data)
    img = cv2.imdecode(np.frombuffer(hdr.data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise DecodeError(f"{hdr.kind.upper()} decoder could not read the file (corrupt or truncated)")
    notes: list[str] = []
    colour = False
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[:, :, :3]
        if img.shape[2] == 3:
            f = img.astype(np.float32)
            spread = float(np.nanmax(np.abs(f - f.mean(axis=2, keepdims=True)))) if f.size else 0.0
            scale = 255.0 if img.dtype == np.uint8 else max(float(np.nanmax(np.abs(f))), 1.0)
            colour = spread / scale > 0.05
            img = img.mean(axis=2).astype(img.dtype) if img.dtype != np.uint8 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        else:
            img = img[:, :, 0]
    return Decoded(frames=[_to_unit(img, notes)], colour=colour, notes=notes)


def _to_unit(img: np.ndarray, notes: list[str]) -> np.ndarray:
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    f = img.astype(np.float32)
    if not np.isfinite(f).all():
        return f  # the gate reports non-finite pixels
    lo, hi = np.percentile(f, [0.5, 99.5])
    notes.append(f"{img.dtype} pixels scaled by their 0.5-99.5 percentile range [{lo:.4g}, {hi:.4g}]")
    if hi <= lo:
        return np.zeros_like(f)
    return np.clip((f - lo) / (hi - lo), 0, 1)


def _decode_dicom(hdr: Header, limits: Limits) -> Decoded:
    pydicom = require("pydicom", "dicom", "reading DICOM files")
    from sdk.preprocess import rescale_slope_intercept, window

    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(_io.BytesIO(hdr.data), force=True)
            if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
                raise DecodeError("DICOM has no pixel data")
            _check_element_length(ds, len(hdr.data))
            arr = ds.pixel_array
    except DecodeError:
        raise
    except Exception as exc:  # lying lengths, unsupported syntaxes, missing decoders...
        raise DecodeError(f"DICOM pixel data could not be decoded: {type(exc).__name__}: {exc}") from exc
    nframes = hdr.frames
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return Decoded(frames=[], colour=True, notes=[f"{hdr.photometric} colour DICOM"])
    arr = arr.reshape((nframes,) + arr.shape[-2:]) if nframes > 1 else arr[None]
    idx = np.arange(nframes)
    if nframes > limits.max_frames:
        idx = np.unique(np.linspace(0, nframes - 1, limits.max_frames).round().astype(int))
        notes.append(f"multi-frame: {len(idx)} of {nframes} frames analysed (evenly spaced)")
    elif nframes > 1:
        notes.append(f"multi-frame: all {nframes} frames analysed, the most suspicious one reported")
    mono1 = (hdr.photometric or "").upper() == "MONOCHROME1"
    frames = []
    for i in idx:
        frames.append(_dicom_values(arr[i], ds, mono1, notes if i == idx[0] else [],
                                    rescale_slope_intercept, window))
    if mono1:
        notes.append("MONOCHROME1 inverted")
    return Decoded(frames=frames, notes=notes)


def _check_element_length(ds, file_size: int) -> None:
    """pydicom silently reads a short value when an element claims more bytes than the file
    holds; refuse it (a lying or truncated length means the file is damaged)."""
    for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if kw not in ds:
            continue
        raw = ds.get_item(kw)
        length, tell = getattr(raw, "length", None), getattr(raw, "value_tell", None)
        if length is None or tell is None or length == 0xFFFFFFFF:
            continue
        if tell + length > file_size:
            raise DecodeError(f"DICOM {kw} element claims {length} bytes but only {file_size - tell} "
                              "remain in the file (lying or truncated length)")


def _num(v, default: float) -> float:
    if v is None:
        return default
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        v = v[0]
    return float(v)


def _dicom_values(px: np.ndarray, ds, mono1: bool, notes: list[str], rescale, window) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if "ModalityLUTSequence" in ds:
        x = apply_modality_lut(px, ds).astype(np.float32)
        notes.append("modality LUT applied")
    else:
        slope, inter = _num(ds.get("RescaleSlope"), 1.0), _num(ds.get("RescaleIntercept"), 0.0)
        x = rescale(px, slope, inter)
        if (slope, inter) != (1.0, 0.0):
            notes.append(f"rescale slope {slope:g} intercept {inter:g}")
    if not np.isfinite(x).all():
        return x
    if "VOILUTSequence" in ds:
        y = apply_voi_lut(x, ds).astype(np.float32)
        lo, hi = float(y.min()), float(y.max())
        y = (y - lo) / (hi - lo) if hi > lo else np.zeros_like(y)
        notes.append("VOI LUT applied")
        return 1.0 - y if mono1 else y
    c, w = ds.get("WindowCenter"), ds.get("WindowWidth")
    if c is not None and w is not None and _num(w, 0) >= 1:
        notes.append(f"window centre {_num(c, 0):g} width {_num(w, 0):g}")
        return window(x, _num(c, 0), _num(w, 0), out="float", invert=mono1)
    lo, hi = np.percentile(x, [0.5, 99.5])
    notes.append("no VOI in the header: 0.5-99.5 percentile window")
    y = np.clip((x - lo) / (hi - lo), 0, 1).astype(np.float32) if hi > lo else np.zeros_like(x, np.float32)
    return 1.0 - y if mono1 else y
