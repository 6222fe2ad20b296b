"""Camera calibration from chessboard photos, saved as a small JSON file.

``calibrate_camera(folder)`` finds the inner corners (``cv2.findChessboardCorners``, 9x6 by
default, refined with ``cornerSubPix``), solves ``cv2.calibrateCamera`` and keeps the RMS
reprojection error in pixels, so a bad calibration is visible in the file itself.
``Undistorter`` applies it to frames through cached remap tables; a frame of another size
than the calibration images uses the camera matrix scaled to that size.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sdk import logger
from sdk.errors import DecodeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class CameraCalibration(BaseModel):
    """What ``edgewise drive calibrate`` writes and ``drive run --calibration`` reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = Field(1, description="file format version")
    image_size: tuple[int, int] = Field(description="(width, height) of the calibration images")
    pattern: tuple[int, int] = Field((9, 6), description="inner corners per row and column")
    camera_matrix: list[list[float]] = Field(description="3x3 intrinsics K")
    dist_coeffs: list[float] = Field(description="k1, k2, p1, p2, k3")
    rms_px: float = Field(description="RMS reprojection error in pixels (cv2.calibrateCamera)")
    images_used: list[str] = Field(default_factory=list, description="photos where the board was found")
    images_rejected: list[str] = Field(default_factory=list, description="photos where it was not")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CameraCalibration":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"calibration file not found: {path}")
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except (json.JSONDecodeError, ValueError) as exc:
            raise ValueError(f"{path} is not a calibration file written by `edgewise drive calibrate`: {exc}") from exc

    def matrices(self, size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(K, dist) for frames of ``size`` = (width, height), scaling K from the calibration size."""
        k = np.array(self.camera_matrix, np.float64)
        if size is not None and tuple(size) != tuple(self.image_size):
            sx, sy = size[0] / self.image_size[0], size[1] / self.image_size[1]
            k = k.copy()
            k[0, :] *= sx
            k[1, :] *= sy
        return k, np.array(self.dist_coeffs, np.float64)


def _images(source: str | Path | list) -> list[Path]:
    if isinstance(source, (list, tuple)):
        return [Path(p) for p in source]
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"chessboard folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def find_corners(gray: np.ndarray, pattern: tuple[int, int], detect_width: int = 640) -> np.ndarray | None:
    """Inner corners (N, 1, 2) at full resolution, or None. Detection runs on a downscaled copy."""
    scale = min(1.0, detect_width / gray.shape[1])
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH + cv2.CALIB_CB_NORMALIZE_IMAGE
    ok, corners = cv2.findChessboardCorners(small, pattern, flags)
    if not ok:
        return None
    corners = (corners / scale).astype(np.float32)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 1e-3)
    return cv2.cornerSubPix(gray, corners, (11, 11), (-1, -1), crit)


def calibrate_camera(source: str | Path | list, pattern: tuple[int, int] = (9, 6),
                     min_images: int = 5) -> CameraCalibration:
    """Calibrate from a folder (or list) of chessboard photos of one camera."""
    files = _images(source)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {source}")
    objp = np.zeros((pattern[0] * pattern[1], 3), np.float32)
    objp[:, :2] = np.mgrid[0:pattern[0], 0:pattern[1]].T.reshape(-1, 2)
    found: list[tuple[str, np.ndarray, tuple[int, int]]] = []
    rejected: list[str] = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise DecodeError(f"cannot read image {f}")
        corners = find_corners(img, pattern)
        if corners is None:
            rejected.append(f.name)
            logger.info("calibration: no %sx%s board found in %s", pattern[0], pattern[1], f.name)
            continue
        found.append((f.name, corners, (img.shape[1], img.shape[0])))
    if len(found) < min_images:
        raise ValueError(f"chessboard ({pattern[0]}x{pattern[1]} inner corners) found in {len(found)} of "
                         f"{len(files)} images, need at least {min_images}; check --pattern and the photos")
    size = Counter(s for _, _, s in found).most_common(1)[0][0]
    # photos a pixel off the common size (a known quirk of some sets) are kept; others are not
    used = [(n, c) for n, c, s in found if abs(s[0] - size[0]) <= 2 and abs(s[1] - size[1]) <= 2]
    rejected += [n for n, _, s in found if not (abs(s[0] - size[0]) <= 2 and abs(s[1] - size[1]) <= 2)]
    rms, k, dist, _, _ = cv2.calibrateCamera([objp] * len(used), [c for _, c in used], size, None, None)
    logger.info("calibration: %d images, RMS reprojection error %.3f px", len(used), rms)
    return CameraCalibration(image_size=size, pattern=pattern, camera_matrix=k.tolist(),
                             dist_coeffs=dist.reshape(-1).tolist(), rms_px=float(rms),
                             images_used=[n for n, _ in used], images_rejected=rejected)


class Undistorter:
    """Remove lens distortion with remap tables cached per frame size."""

    def __init__(self, calibration: CameraCalibration):
        self.calibration = calibration
        self._maps: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        size = (frame.shape[1], frame.shape[0])
        if size not in self._maps:
            k, dist = self.calibration.matrices(size)
            self._maps[size] = cv2.initUndistortRectifyMap(k, dist, None, k, size, cv2.CV_16SC2)
        m1, m2 = self._maps[size]
        return cv2.remap(frame, m1, m2, cv2.INTER_LINEAR)
