"""WAV reading and writing with the standard library only.

Reading parses the RIFF chunks itself (``struct``), because Python's ``wave`` module reads
integer PCM only: this reader handles PCM 8/16/24/32-bit and IEEE float 32/64-bit, plain
or WAVE_FORMAT_EXTENSIBLE. Corrupt or truncated files raise :class:`~sdk.errors.DecodeError`
before any sample is returned. Writing uses ``wave`` (16-bit PCM).
"""
from __future__ import annotations

import os
import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from sdk.closing import Closing
from sdk.errors import DecodeError

__all__ = ["WavInfo", "WavReader", "read_wav", "write_wav"]

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


@dataclass(frozen=True)
class WavInfo:
    sample_rate: int
    channels: int
    bits: int
    format: str          # "pcm" | "float"
    frames: int
    data_offset: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def _parse(f: BinaryIO, size: int, name: str) -> WavInfo:
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise DecodeError(f"{name}: not a WAV file (expected a RIFF/WAVE header, got {head[:12]!r})")
    fmt = None
    pos = 12
    while True:
        hdr = f.read(8)
        if len(hdr) < 8:
            what = "fmt and data chunks" if fmt is None else "a data chunk"
            raise DecodeError(f"{name}: truncated or corrupt WAV: expected {what}, reached the end "
                              f"of the file at byte {pos}")
        cid, csize = hdr[:4], struct.unpack("<I", hdr[4:])[0]
        pos += 8
        if cid == b"fmt ":
            if csize < 16:
                raise DecodeError(f"{name}: corrupt WAV: fmt chunk of {csize} bytes (expected >= 16)")
            body = f.read(csize)
            if len(body) < csize:
                raise DecodeError(f"{name}: truncated WAV inside the fmt chunk")
            tag, ch, sr, _, align, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _EXTENSIBLE and csize >= 26:
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, ch, sr, align, bits)
            pos += csize + (csize & 1)
            if csize & 1:
                f.read(1)
        elif cid == b"data":
            if fmt is None:
                raise DecodeError(f"{name}: corrupt WAV: data chunk before the fmt chunk")
            tag, ch, sr, align, bits = fmt
            kind = {_PCM: "pcm", _FLOAT: "float"}.get(tag)
            ok_bits = {"pcm": (8, 16, 24, 32), "float": (32, 64)}.get(kind, ()) if kind else ()
            if kind is None or bits not in ok_bits:
                raise DecodeError(f"{name}: unsupported WAV encoding (format tag {tag}, {bits} bits);"
                                  f" expected PCM 8/16/24/32-bit or float 32/64-bit")
            if ch < 1 or sr < 1 or align != ch * bits // 8:
                raise DecodeError(f"{name}: corrupt WAV header: channels={ch} rate={sr} "
                                  f"block_align={align} bits={bits}")
            avail = size - pos
            if csize in (0, 0xFFFFFFFF):       # length unknown (streamed writer): read to EOF
                csize = avail - avail % align
            if csize > avail:
                raise DecodeError(f"{name}: truncated WAV: the data chunk declares {csize} bytes "
                                  f"but the file holds {avail}")
            return WavInfo(sr, ch, bits, kind, csize // align, pos)
        else:
            f.seek(csize + (csize & 1), os.SEEK_CUR)
            pos += csize + (csize & 1)
            if pos > size:
                raise DecodeError(f"{name}: truncated WAV inside a {cid!r} chunk")


def _decode(raw: bytes, info: WavInfo) -> np.ndarray:
    if info.format == "float":
        x = np.frombuffer(raw, "<f4" if info.bits == 32 else "<f8").astype(np.float32)
    elif info.bits == 8:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif info.bits == 16:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif info.bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8      # sign-extend
        x = v.astype(np.float32) / 8388608.0
    else:
        x = (np.frombuffer(raw, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    return x.reshape(-1, info.channels)


class WavReader(Closing):
    """An open WAV file: ``info`` and float32 blocks ``(n, channels)`` in [-1, 1]."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"WAV file not found: {self.path}")
        self._f = open(self.path, "rb")
        try:
            self.info = _parse(self._f, self.path.stat().st_size, str(self.path))
        except BaseException:
            self._f.close()
            raise

    def blocks(self, block_size: int) -> Iterator[np.ndarray]:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        info = self.info
        align = info.channels * info.bits // 8
        self._f.seek(info.data_offset)
        left = info.frames
        while left > 0:
            n = min(block_size, left)
            raw = self._f.read(n * align)
            if len(raw) < n * align:     # the file shrank under us
                raise DecodeError(f"{self.path}: truncated WAV: expected {n * align} more bytes, "
                                  f"got {len(raw)}")
            left -= n
            yield _decode(raw, info)

    def read_all(self) -> np.ndarray:
        parts = list(self.blocks(1 << 16))
        if not parts:
            return np.zeros((0, self.info.channels), np.float32)
        return np.concatenate(parts)

    def close(self) -> None:
        self._f.close()


def read_wav(path: str | os.PathLike, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read a whole WAV file: ``(samples float32, sample_rate)``; ``mono`` averages the
    channels to ``(n,)``, otherwise ``(n, channels)``."""
    with WavReader(path) as r:
        x = r.read_all()
        sr = r.info.sample_rate
    return (x.mean(axis=1, dtype=np.float32) if mono else x), sr


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> Path:
    """Write float samples (``(n,)`` or ``(n, channels)``, clipped to [-1, 1]) or int16 as
    16-bit PCM."""
    x = np.asarray(samples)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"samples must be (n,) or (n, channels), got shape {x.shape}")
    if x.dtype != np.int16:
        x = np.clip(np.rint(np.clip(x, -1.0, 1.0) * 32767.0), -32768, 32767).astype("<i2")
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(x.astype("<i2").tobytes())
    return path
