"""Fixtures of the medical app tests: images and DICOM files built on the fly."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

BUNDLE = Path(os.environ.get("EDGEWISE_MEDICAL_BUNDLE", Path(__file__).resolve().parents[2] / "apps" / "medical_imaging"
                             / "bundles" / "pneumonia-triage"))


def chest_like(size: int = 256, seed: int = 0) -> np.ndarray:
    """A smooth gray image with two dark 'lung fields' (float 0..1), not a real radiograph."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.6 + 0.2 * np.cos((xx - 0.5) * 3) - 0.3 * (np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.02)
                                                      + np.exp(-((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / 0.02))
    return np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1).astype(np.float32)


def write_png(path: Path, img01: np.ndarray, bits: int = 8) -> Path:
    if bits == 8:
        cv2.imwrite(str(path), (img01 * 255).round().astype(np.uint8))
    else:
        cv2.imwrite(str(path), (img01 * 4095).round().astype(np.uint16))  # 12-bit values in 16-bit PNG
    return path


def make_dicom(path: Path, img01: np.ndarray | None = None, *, modality: str = "DX", body_part: str | None = "CHEST",
               photometric: str = "MONOCHROME2", slope: float = 1.0, intercept: float = 0.0,
               window: tuple[float, float] | None = None, frames: int = 1, pixels: bool = True,
               patient: str = "Doe^Jane", rows: int | None = None, cols: int | None = None) -> Path:
    """Write a small uncompressed DICOM with pydicom (skips the test if pydicom is missing)."""
    pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    img01 = chest_like(64) if img01 is None else img01
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    if body_part:
        ds.BodyPartExamined = body_part
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = patient, "PID-12345", "20190101"
    stored = img01 if photometric == "MONOCHROME2" else 1.0 - img01
    # stored values such that slope*stored+intercept spans 0..4000
    values = ((stored * 4000.0 - intercept) / slope).round()
    arr = np.repeat(values[None].astype(np.uint16), frames, axis=0) if frames > 1 else values.astype(np.uint16)
    ds.Rows, ds.Columns = rows or img01.shape[0], cols or img01.shape[1]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if (slope, intercept) != (1.0, 0.0):
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if pixels:
        ds.PixelData = arr.tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.fixture(scope="session")
def bundle_path() -> Path:
    if not (BUNDLE / "manifest.json").is_file():
        pytest.skip(f"committed bundle not found at {BUNDLE} (run apps/medical_imaging/train.py)")
    return BUNDLE
