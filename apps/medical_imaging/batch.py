"""``edgewise batch medical SRC --out DIR``: triage an archive on Ray, one Parquet row per file.

Each worker holds one :class:`~apps.medical_imaging.triage.Triage` session and calls its
per-file ``process(path) -> Study``: the same gate, OOD check, calibration and policy as
``edgewise medical triage``. The session writes its side outputs (audit log, thumbnails) into
a scratch folder on the worker, removed when the worker ends; the rows in ``DIR`` are the result.
Found by ``edgewise batch`` next to this app's ``edgewise.commands`` entry point.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from sdk.batch import ItemResult, JobSpec, add_batch_arguments, bundles_hash, run_from_args, scratch_dir

SUFFIXES = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom", ""]   # as `medical triage` scans


class MedicalProcessor:
    """Built once per worker: loads the triage bundle(s), then triages one file per call."""

    def __init__(self, bundles: list[str] | None = None, max_pixels: int = 50_000_000):
        from apps.medical_imaging.io.loaders import Limits
        from apps.medical_imaging.triage import Triage

        self._scratch = scratch_dir("medical", self)   # removed at worker exit, or by the next worker
        self._triage = Triage(self._scratch, bundles, limits=Limits(max_pixels=max_pixels), heatmaps=False)

    def process(self, path: Path) -> ItemResult:
        s = self._triage.process(path)
        for sub in ("images", "heatmaps"):   # thumbnails are not part of a batch result
            for f in (self._scratch / sub).glob("*.png"):
                f.unlink(missing_ok=True)
        return ItemResult(status=s.status, error=s.status == "not_analysed", reasons=list(s.reasons),
                          model=s.model, scores={"probability": s.probability, "ood_score": s.ood_score},
                          fields={"priority": s.priority, "modality": s.modality, "notes": "; ".join(s.notes)})

    def close(self) -> None:
        self._triage.close()
        shutil.rmtree(self._scratch, ignore_errors=True)


def medical_spec(bundles: list[str | Path] | None = None, max_pixels: int = 50_000_000) -> JobSpec:
    """The job for these bundles (default: the committed ones); verifies them on the driver."""
    from apps.medical_imaging.model import default_bundles
    from sdk.bundle import load_bundle

    paths = [str(Path(b).absolute()) for b in (bundles or default_bundles())]
    names = [f"{m.name}@{m.version}" for m in (load_bundle(p).manifest for p in paths)]
    return JobSpec(name="medical", processor="apps.medical_imaging.batch:MedicalProcessor",
                   kwargs={"bundles": paths, "max_pixels": max_pixels}, model_name=", ".join(names),
                   model_hash=bundles_hash(paths), scores=["probability", "ood_score"],
                   fields=["priority", "modality", "notes"], suffixes=SUFFIXES)


def register_batch(subparsers) -> None:
    p = subparsers.add_parser("medical", help="chest X-ray triage of an archive (same decisions as `medical triage`)",
                              description="Triage every image/DICOM under SRC (or listed in a CSV/Parquet file) on "
                                          "Ray. Reference design - not a medical device.")
    add_batch_arguments(p)
    p.add_argument("--bundle", action="append", default=None,
                   help="triage bundle(s), served by modality (default: the committed bundles)")
    p.add_argument("--max-pixels", type=int, default=50_000_000, help="refuse images above this many pixels")
    p.set_defaults(func=lambda args: run_from_args(medical_spec(args.bundle, args.max_pixels), args))
