"""Loaders, header parser and the quality/compatibility gate (no model needed)."""
from __future__ import annotations

import struct
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from apps.medical_imaging import gate
from apps.medical_imaging.io import Limits, decode, probe_raster, read_header
from sdk.errors import DecodeError

from .conftest import chest_like, make_dicom, write_png

ACCEPTS = gate.Accepts(modalities=["CR", "DX", "DR", "image"], body_parts=["CHEST"])
QUALITY = gate.Quality()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(path: Path, w: int = 100_000, h: int = 100_000) -> Path:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    body = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + _chunk(b"IEND", b""))
    path.write_bytes(body)
    return path


def huge_jpeg(path: Path) -> Path:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 65000, 65000, 1) + b"\x01\x11\x00"
    path.write_bytes(b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + b"\0" * 9 + sof + b"\xff\xd9")
    return path


def huge_tiff(path: Path) -> Path:
    entries = [(256, 4, 1, 100_000), (257, 4, 1, 100_000), (258, 3, 1, 8), (277, 3, 1, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd)
    return path


@pytest.mark.parametrize("maker,kind", [(huge_png, "png"), (huge_jpeg, "jpeg"), (huge_tiff, "tiff")])
def test_huge_header_refused_before_decoding(tmp_path, maker, kind):
    p = maker(tmp_path / f"huge.{kind}")
    hdr = probe_raster(p.read_bytes(), kind)
    assert hdr.width * hdr.height >= 65000 * 65000
    tracemalloc.start()
    with pytest.raises(DecodeError, match="refused before decoding"):
        read_header(p, Limits())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2_000_000, f"refusal allocated {peak} bytes"


def test_header_parser_matches_real_encoders(tmp_path):
    img = (chest_like(40)[:30] * 255).astype(np.uint8)  # 30 x 40
    for ext, kind in ((".png", "png"), (".jpg", "jpeg"), (".tif", "tiff")):
        ok, buf = cv2.imencode(ext, img)
        h = probe_raster(buf.tobytes(), kind)
        assert (h.width, h.height) == (40, 30), kind


def test_png_8_and_16_bit(tmp_path):
    img = chest_like(64)
    d8 = decode(read_header(write_png(tmp_path / "a.png", img, 8)))
    d16 = decode(read_header(write_png(tmp_path / "b.png", img, 16)))
    assert np.abs(d8.frames[0] - img).max() < 0.01
    assert d16.frames[0].min() == 0.0 and d16.frames[0].max() == 1.0   # percentile-scaled
    assert "uint16" in d16.notes[0]
    assert np.corrcoef(d16.frames[0].ravel(), img.ravel())[0, 1] > 0.99


def test_dicom_rescale_window_monochrome1(tmp_path):
    img = chest_like(64)
    p = make_dicom(tmp_path / "m1.dcm", img, photometric="MONOCHROME1", slope=2.0, intercept=-100.0,
                   window=(2000.0, 4000.0))
    hdr = read_header(p)
    assert (hdr.modality, hdr.body_part, hdr.photometric) == ("DX", "CHEST", "MONOCHROME1")
    dec = decode(hdr)
    assert "MONOCHROME1 inverted" in dec.notes and any("rescale slope 2" in n for n in dec.notes)
    # stored = (1 - img) through slope/intercept and the window, inverted back -> img
    assert np.abs(dec.frames[0] - img).max() < 2e-3


def test_dicom_multiframe(tmp_path):
    p = make_dicom(tmp_path / "mf.dcm", chest_like(32), frames=20)
    dec = decode(read_header(p), Limits(max_frames=4))
    assert len(dec.frames) == 4 and "4 of 20 frames" in dec.notes[0]


def _pydicom_file(name: str) -> str:
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    p = get_testdata_file(name, download=False)
    if p is None:
        pytest.skip(f"pydicom test file {name} not shipped with this pydicom")
    return p


@pytest.mark.parametrize("name,reason", [
    ("CT_small.dcm", "modality CT not accepted by model (accepts CR, DX, DR)"),
    ("MR_small.dcm", "modality MR not accepted by model (accepts CR, DX, DR)"),
    ("6278", "body part CSPINE not accepted by model (accepts CHEST)"),
])
def test_real_pydicom_files_refused_by_gate(name, reason):
    hdr = read_header(_pydicom_file(name))
    res = gate.check_header(hdr, ACCEPTS)
    assert not res.ok and res.reason == reason


def test_compressed_transfer_syntax_decodes():
    hdr = read_header(_pydicom_file("MR_small_jp2klossless.dcm"))
    ref = decode(read_header(_pydicom_file("MR_small.dcm")))
    dec = decode(hdr)
    assert np.allclose(dec.frames[0], ref.frames[0])


def _truncated(tmp_path, ext):
    ok, buf = cv2.imencode(ext, (chest_like(64) * 255).astype(np.uint8))
    b = buf.tobytes()
    p = tmp_path / f"t{ext}"
    p.write_bytes(b[: len(b) * 2 // 3])
    return p


def _no_pixels(tmp_path):
    return make_dicom(tmp_path / "nopix.dcm", pixels=False)


def _lying_rows(tmp_path):
    return make_dicom(tmp_path / "lie.dcm", chest_like(32), rows=64, cols=64)  # claims 64x64, has 32x32


def _lying_element_length(tmp_path):
    p = make_dicom(tmp_path / "len.dcm", chest_like(32))
    b = bytearray(p.read_bytes())
    i = b.rfind(b"\xe0\x7f\x10\x00OW")       # (7FE0,0010) OW, 2 reserved bytes, 4-byte length
    b[i + 8:i + 12] = struct.pack("<I", 10_000_000)
    p.write_bytes(bytes(b))
    return p


def _nan_tiff(tmp_path):
    img = chest_like(64)
    img[10:20, 10:20] = np.nan
    p = tmp_path / "nan.tif"
    assert cv2.imwrite(str(p), img)
    return p


def _garbage(tmp_path):
    p = tmp_path / "noise.png"
    p.write_bytes(b"not an image at all" * 10)
    return p


@pytest.mark.parametrize("make,expect", [
    (lambda t: _truncated(t, ".png"), "truncated PNG"),
    (lambda t: _truncated(t, ".jpg"), "truncated JPEG"),
    (_no_pixels, "no pixel data"),
    (_lying_rows, "could not be decoded"),
    (_lying_element_length, "DICOM"),
    (_garbage, "unrecognised file format"),
    (lambda t: huge_png(t / "h.png"), "refused before decoding"),
])
def test_bad_inputs_raise_decode_error(tmp_path, make, expect):
    p = make(tmp_path)
    with pytest.raises(DecodeError, match=expect):
        decode(read_header(p))


@pytest.mark.parametrize("img,expect", [
    (np.full((64, 64), 0.5, np.float32), "constant or blank"),
    (np.where(np.arange(64 * 64).reshape(64, 64) % 5 == 0, 0.5, 0.0).astype(np.float32), "under-exposed"),
    (np.where(np.arange(64 * 64).reshape(64, 64) % 5 == 0, 0.5, 1.0).astype(np.float32), "over-exposed"),
    (chest_like(64), None),
])
def test_quality_gate(img, expect):
    res = gate.check_frame(img, QUALITY)
    assert res.ok is (expect is None)
    if expect:
        assert expect in res.reason


def test_nan_pixels_caught_by_gate(tmp_path):
    dec = decode(read_header(_nan_tiff(tmp_path)))
    res = gate.check_pixels(dec, QUALITY)
    assert not res.ok and "not finite" in res.reason


def test_small_and_colour_images(tmp_path):
    small = read_header(write_png(tmp_path / "s.png", chest_like(16)))
    assert "smaller than the minimum 28x28" in gate.check_header(small, ACCEPTS).reason
    p = tmp_path / "c.png"
    cv2.imwrite(str(p), (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    assert "colour image" in gate.check_pixels(decode(read_header(p)), QUALITY).reason


def test_dicom_claiming_huge_dimensions_refused_before_decoding(tmp_path):
    p = make_dicom(tmp_path / "huge.dcm", chest_like(32), rows=60000, cols=60000, frames=1)
    with pytest.raises(DecodeError, match="refused before decoding"):
        read_header(p)


def test_file_vanished_is_file_not_found(tmp_path):
    p = write_png(tmp_path / "gone.png", chest_like(32))
    p.unlink()
    with pytest.raises(FileNotFoundError):
        read_header(p)
