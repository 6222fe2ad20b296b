"""Input decoding: raster images (PNG/JPEG/TIFF, 8/16 bit) and DICOM."""
from apps.medical_imaging.io.headers import RasterHeader, probe_raster
from apps.medical_imaging.io.loaders import Decoded, Header, Limits, decode, read_header

__all__ = ["Header", "Decoded", "Limits", "read_header", "decode", "RasterHeader", "probe_raster"]
