"""Demo: triage inputs that exist on a fresh machine (pydicom's test files and a few
synthetic images) plus, where ``../shared`` exists, 24 real validation chest X-rays, and
print where the report is.  ``python -m apps.medical_imaging.demo [OUT_DIR]``"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _synthetic_inputs(folder: Path) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256] / 256.0
    chest = (0.55 + 0.25 * np.cos((xx - 0.5) * 3) - 0.35 * (np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.02)
                                                             + np.exp(-((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / 0.02)))
    chest = np.clip(chest + rng.normal(0, 0.03, chest.shape), 0, 1)
    cv2.imwrite(str(folder / "synthetic_chest_like.png"), (chest * 255).astype(np.uint8))
    cv2.imwrite(str(folder / "blank.png"), np.full((256, 256), 128, np.uint8))
    cv2.imwrite(str(folder / "overexposed.png"), (np.clip(chest + 0.45, 0, 1) * 255).astype(np.uint8))
    cv2.imwrite(str(folder / "underexposed.png"), (np.clip(chest - 0.5, 0, 1) * 255).astype(np.uint8))
    cv2.imwrite(str(folder / "tiny.png"), (rng.random((12, 12)) * 255).astype(np.uint8))
    cv2.imwrite(str(folder / "colour_photo.png"), (rng.random((64, 64, 3)) * 255).astype(np.uint8))
    good = (folder / "synthetic_chest_like.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])


def _pydicom_inputs(folder: Path) -> None:
    try:
        from pydicom.data import get_testdata_file
    except ImportError:
        print("pydicom not installed: DICOM examples skipped (pip install 'edgewise[dicom]')")
        return
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_jp2klossless.dcm", "JPEG2000.dcm", "rtplan.dcm", "6278",
                 "examples_rgb_color.dcm"):
        p = get_testdata_file(name, download=False)  # never the network
        if p:
            shutil.copy(p, folder / name)


def _shared_val(folder: Path, n: int = 24) -> int:
    root = Path(os.environ.get("EDGEWISE_SHARED", REPO.parent / "shared"))
    data = root / "data" / "medical" / "pneumoniamnist_28.npz"
    if not data.is_file():
        print(f"real validation images not found at {data}: skipped")
        return 0
    from apps.medical_imaging.data import load_split

    x, y = load_split(data, "val")
    idx = np.random.default_rng(0).choice(len(x), size=n, replace=False)
    for i in idx:
        cv2.imwrite(str(folder / f"val_{i:03d}_label{int(y[i])}.png"), x[i])
    return n


def write_dicom(path: Path, img_u8: np.ndarray, modality: str, body_part: str) -> None:
    """A minimal uncompressed DICOM (MONOCHROME2, 8 bit) with no patient identifiers."""
    from sdk.errors import require

    require("pydicom", "dicom", "writing demo DICOM files")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1" if modality == "US" else "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.BodyPartExamined = modality, body_part
    ds.Rows, ds.Columns = img_u8.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(img_u8, np.uint8).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def _shared_breast(folder: Path, n: int = 4) -> int:
    """Breast ultrasound val images as DICOM US, routed to the breast bundle by modality."""
    from apps.medical_imaging.model import BUNDLES_DIR

    root = Path(os.environ.get("EDGEWISE_SHARED", REPO.parent / "shared"))
    data = root / "data" / "medical" / "breastmnist_28.npz"
    if not data.is_file() or not (BUNDLES_DIR / "breast-us-triage" / "manifest.json").is_file():
        return 0
    try:
        from apps.medical_imaging.data import load_split

        x, _ = load_split(data, "val")
        for i in range(n):
            write_dicom(folder / f"breast_us_{i}.dcm", x[i], "US", "BREAST")
    except ImportError:
        return 0
    return n


def demo(out_dir: str | Path | None = None) -> Path:
    from apps.medical_imaging.triage import Triage, scan

    inputs = Path(tempfile.mkdtemp(prefix="edgewise_medical_inputs_"))
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="edgewise_medical_out_"))
    _synthetic_inputs(inputs)
    _pydicom_inputs(inputs)
    n_real = _shared_val(inputs)
    n_real += _shared_breast(inputs)
    with Triage(out) as tri:
        tri.run(scan(inputs, skip=out))
        ordered = tri.write_outputs()
    counts = {k: sum(s.status == k for s in ordered) for k in ("ok", "abstain", "not_analysed")}
    print(f"medical triage demo: {len(ordered)} studies ({n_real} real val images) -> {counts}; "
          f"models: {', '.join(m.name for m in tri.models)}")
    for s in ordered[:8]:
        p = "  -  " if s.probability is None else f"{s.probability:.3f}"
        print(f"  {s.priority:8s} {s.status:13s} {p}  {'; '.join(s.reasons)[:100]}")
    print(f"report: {out / 'report.html'}\nworklist: {out / 'worklist.csv'}\naudit: {out / 'audit.jsonl'} "
          f"(check with `edgewise medical verify-audit {out / 'audit.jsonl'}`)")
    return out / "report.html"


if __name__ == "__main__":
    demo(sys.argv[1] if len(sys.argv) > 1 else None)
