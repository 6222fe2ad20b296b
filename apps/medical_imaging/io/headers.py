"""Tiny header parsers: image dimensions from the first bytes, without decoding anything.

Used to refuse a file whose header claims more pixels than the limit *before* a decoder
allocates memory for it (a 100000 x 100000 PNG is 80 bytes on disk and 10 GB decoded),
and to catch truncated PNG/JPEG files that some decoders would silently pad.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from sdk.errors import DecodeError

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class RasterHeader:
    kind: str          # "png" | "jpeg" | "tiff"
    width: int
    height: int
    channels: int | None
    bits: int | None


def sniff(data: bytes) -> str | None:
    """Format from magic bytes: png, jpeg, tiff, dicom (with preamble) or None."""
    if data[128:132] == b"DICM":  # first: some DICOM preambles start like a TIFF header
        return "dicom"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return None


def probe_raster(data: bytes, kind: str) -> RasterHeader:
    """Parse the header of a PNG/JPEG/TIFF byte string (raises DecodeError when malformed)."""
    try:
        return {"png": _png, "jpeg": _jpeg, "tiff": _tiff}[kind](data)
    except (struct.error, IndexError) as exc:
        raise DecodeError(f"truncated or malformed {kind.upper()} header ({exc})") from exc


def _png(data: bytes) -> RasterHeader:
    if data[12:16] != b"IHDR":
        raise DecodeError("malformed PNG: first chunk is not IHDR")
    w, h, bits, ctype = struct.unpack(">IIBB", data[16:26])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(ctype)
    return RasterHeader("png", w, h, channels, bits)


def check_png_complete(data: bytes) -> None:
    """Walk the PNG chunks (lengths and CRCs) up to IEND; DecodeError if truncated or corrupt."""
    pos = 8
    while True:
        if pos + 8 > len(data):
            raise DecodeError(f"truncated PNG: file ends at byte {len(data)} before the IEND chunk")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise DecodeError(f"truncated PNG: chunk {ctype!r} needs {length} bytes at offset {pos}, "
                              f"file has {len(data)} bytes")
        crc = struct.unpack(">I", data[end - 4:end])[0]
        if zlib.crc32(data[pos + 4:end - 4]) & 0xFFFFFFFF != crc:
            raise DecodeError(f"corrupt PNG: CRC mismatch in chunk {ctype!r} at offset {pos}")
        if ctype == b"IEND":
            return
        pos = end


def _jpeg(data: bytes) -> RasterHeader:
    pos = 2
    n = len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise DecodeError(f"malformed JPEG: expected a marker at offset {pos}")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        marker = data[pos]
        pos += 1
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            continue
        if marker in (0xD9, 0xDA):
            break
        (length,) = struct.unpack(">H", data[pos:pos + 2])
        if marker in _SOF:
            bits, h, w, comps = struct.unpack(">BHHB", data[pos + 2:pos + 8])
            return RasterHeader("jpeg", w, h, comps, bits)
        pos += length
    raise DecodeError("malformed or truncated JPEG: no frame header (SOF) before the scan data")


def check_jpeg_complete(data: bytes) -> None:
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise DecodeError(f"truncated JPEG: no end-of-image marker (file has {len(data)} bytes)")


_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}


def _tiff(data: bytes) -> RasterHeader:
    e = "<" if data[:2] == b"II" else ">"
    version = struct.unpack(e + "H", data[2:4])[0]
    big = version == 43
    if big:
        ifd = struct.unpack(e + "Q", data[8:16])[0]
        count = struct.unpack(e + "Q", data[ifd:ifd + 8])[0]
        entry, first, size = 20, ifd + 8, 8
    else:
        ifd = struct.unpack(e + "I", data[4:8])[0]
        count = struct.unpack(e + "H", data[ifd:ifd + 2])[0]
        entry, first, size = 12, ifd + 2, 4
    tags: dict[int, int] = {}
    for i in range(min(count, 4096)):
        off = first + i * entry
        tag, typ = struct.unpack(e + "HH", data[off:off + 4])
        if tag in (256, 257, 258, 277) and typ in _TIFF_TYPES:
            fmt, width = _TIFF_TYPES[typ]
            voff = off + 4 + size
            tags[tag] = struct.unpack(e + fmt, data[voff:voff + width])[0]
    if 256 not in tags or 257 not in tags:
        raise DecodeError("malformed TIFF: first IFD has no ImageWidth/ImageLength")
    return RasterHeader("tiff", tags[256], tags[257], tags.get(277), tags.get(258))
