"""Every parser that reads user bytes raises its typed error (or succeeds), never anything else.

WAV reader, image header checks, DICOM headers, read_header + decode, bundle manifest,
catalog, bundle archive, audit log, bundle signature."""
from __future__ import annotations

import io
import json
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("hypothesis", reason="hypothesis (extra 'dev') is needed for the fuzz tests")
from hypothesis import (  # noqa: E402
    example,
    given,
    strategies as st,  # noqa: E402
)

from sdk.errors import BundleError, DecodeError, StoreError  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAGICS = [PNG_MAGIC, PNG_MAGIC + b"\x00\x00\x00\x0dIHDR", b"\xff\xd8\xff", b"\xff\xd8\xff\xc0\x00\x11\x08",
          b"II*\x00", b"MM\x00*", b"II+\x00\x08\x00\x00\x00", b"\x00" * 128 + b"DICM", b"\x08\x00\x05\x00"]
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=5),
                           max_leaves=25)


_SCRATCH = tempfile.TemporaryDirectory(prefix="ew-fuzz-")   # removed when the test process exits


def _fresh_dir() -> Path:
    """An empty folder for one example; the previous example's files go (hypothesis runs hundreds)."""
    d = Path(_SCRATCH.name) / "case"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    return d


def _tmpfile(data: bytes, suffix: str) -> Path:
    d = _fresh_dir()
    p = d / f"f{suffix}"
    p.write_bytes(data)
    return p


# --- WAV ------------------------------------------------------------------------------------
def _wav_header(tag, ch, rate, bits, data_len, extra):
    fmt = struct.pack("<HHIIHH", tag, ch, rate, (rate * ch * bits // 8) & 0xFFFFFFFF,
                      (max(ch, 0) * max(bits, 0) // 8) & 0xFFFF, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_len) + extra
    return b"RIFF" + struct.pack("<I", len(body) & 0xFFFFFFFF) + body


@given(st.one_of(
    st.binary(max_size=300),
    st.builds(lambda b: b"RIFF\x00\x00\x00\x00WAVE" + b, st.binary(max_size=200)),
    st.builds(_wav_header, st.sampled_from([1, 3, 0xFFFE, 2, 0]), st.integers(0, 65535),
              st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 8, 16, 24, 32, 64, 7]),
              st.integers(0, 2**32 - 1), st.binary(max_size=64))))
@example(_wav_header(1, 1, 16000, 16, 4, b"\x00\x00"))   # data chunk shorter than declared
def test_wav_reader(data):
    from sdk.pipeline.wavfile import read_wav

    p = _tmpfile(data, ".wav")
    try:
        x, sr = read_wav(p)
        assert sr > 0 and x.ndim == 1
    except DecodeError:
        pass


# --- image and DICOM header checks ------------------------------------------------------------
@given(st.sampled_from(MAGICS), st.binary(max_size=400))
def test_raster_header_checks(magic, tail):
    from apps.medical_imaging.io.headers import check_jpeg_complete, check_png_complete, probe_raster, sniff

    data = magic + tail
    kind = sniff(data)
    for fn in (lambda: probe_raster(data, kind) if kind in ("png", "jpeg", "tiff") else None,
               lambda: check_png_complete(data), lambda: check_jpeg_complete(data)):
        try:
            fn()
        except DecodeError:
            pass


def _dicom_bytes(elements: list[tuple[int, int, bytes, bytes]], preamble: bool) -> bytes:
    out = (b"\x00" * 128 + b"DICM") if preamble else b""
    for group, elem, vr, value in elements:
        out += struct.pack("<HH", group, elem) + vr
        out += (struct.pack("<H", len(value) & 0xFFFF) if vr not in (b"OB", b"OW", b"SQ", b"UN")
                else b"\x00\x00" + struct.pack("<I", len(value)))
        out += value
    return out


dicom_elements = st.lists(st.tuples(st.sampled_from([0x0002, 0x0008, 0x0018, 0x0028, 0x7FE0]),
                                    st.sampled_from([0x0010, 0x0060, 0x0008, 0x0011, 0x0100, 0x0004, 0x0002]),
                                    st.sampled_from([b"UI", b"CS", b"US", b"IS", b"OB", b"OW", b"SQ", b"LO"]),
                                    st.binary(max_size=40)), max_size=8)


@given(st.one_of(st.builds(lambda m, t: m + t, st.sampled_from(MAGICS), st.binary(max_size=300)),
                 st.builds(_dicom_bytes, dicom_elements, st.booleans())), st.sampled_from([".png", ".dcm", ""]))
def test_read_header_and_decode(data, suffix):
    pytest.importorskip("pydicom")
    from apps.medical_imaging.io import Limits, decode, read_header

    limits = Limits(max_pixels=200_000, max_file_bytes=1 << 16)
    p = _tmpfile(data, suffix)
    try:
        hdr = read_header(p, limits)
    except DecodeError:
        return
    try:
        decode(hdr, limits)
    except DecodeError:
        pass


# --- manifest, catalog ------------------------------------------------------------------------
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                 st.integers(1, 60_000).map(lambda n: b"[" * n)))
@example(b"[" * 100_000)                               # deeper than Python's JSON recursion limit
@example(json.dumps({"name": "x", "version": "1", "task": "t", "models": {"m": {"file": "../x.onnx"}},
                     "files": {"../x.onnx": "0" * 64}}).encode())
def test_manifest(data):
    from sdk.bundle.verify import read_manifest

    d = _fresh_dir()
    (d / "manifest.json").write_bytes(data)
    try:
        read_manifest(d)
    except BundleError:
        pass


@given(st.one_of(json_values, st.lists(json_values, max_size=3),
                 st.fixed_dictionaries({"models": st.lists(st.dictionaries(
                     st.sampled_from(["name", "url", "sha256", "size", "kind", "files", "filename", "licence"]),
                     json_values, max_size=6), max_size=3)})))
def test_catalog_parse(data):
    from sdk.bundle.catalog import parse_catalog

    try:
        parse_catalog(data, "fuzz")
    except StoreError:
        pass


@given(st.one_of(st.binary(max_size=200), st.integers(1, 60_000).map(lambda n: b"{\"models\":" + b"[" * n)))
@example(b"[" * 100_000)
def test_catalog_file(data):
    from sdk.bundle.catalog import read_catalog

    try:
        read_catalog(_tmpfile(data, ".json"))
    except StoreError:
        pass


# --- archive ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_archive(tmp_path_factory) -> bytes:
    from sdk.bundle import pack_bundle, save_bundle
    from tests.sdk.test_bundle import make_manifest, make_model

    d = tmp_path_factory.mktemp("ewb")
    save_bundle(d / "b", make_manifest(), {"model.onnx": make_model(), "vocab.txt": b"a\nb\n"})
    return pack_bundle(d / "b", d / "b.ewb").read_bytes()


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")   # duplicate names are one of the cases
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


@given(data=st.data())
def test_archive(good_archive, data):
    from sdk.bundle import load_bundle, unpack_bundle

    choice = data.draw(st.sampled_from(["flip", "truncate", "random", "members"]))
    raw = bytearray(good_archive)
    if choice == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    elif choice == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    elif choice == "random":
        raw = bytearray(data.draw(st.binary(max_size=300)))
    else:
        names = st.sampled_from(["manifest.json", "model.onnx", "../evil", "/abs", "a/../../b", "ok.txt", "x.onnx",
                                 "dir/", "con", "a\\b"])
        raw = bytearray(_zip(data.draw(st.lists(st.tuples(names, st.binary(max_size=50)), max_size=4))))
    p = _tmpfile(bytes(raw), ".ewb")
    dest = p.parent / "out"
    try:
        unpack_bundle(p, dest)
    except BundleError:
        assert not dest.exists() or not any(dest.iterdir())       # nothing left behind when refused
    try:
        load_bundle(p)
    except BundleError:
        pass


# --- audit log, signature -----------------------------------------------------------------------
@given(st.binary(max_size=400), st.booleans())
@example(b"[" * 100_000 + b"\n", False)
def test_audit_verify(data, with_real_prefix):
    from apps.medical_imaging.audit import AuditLog, verify
    from apps.medical_imaging.audit_key import load_key

    load_key(create=True)                      # the device key exists: MACs and checkpoint are checked
    d = _fresh_dir()
    path = d / "audit.jsonl"
    if with_real_prefix:
        AuditLog(path).append(time="t", model="m", model_version="1", sdk_version="0", model_sha256="a",
                              input_sha256="b", study_id="s", decision={}, status="ok", reason="r")
    with open(path, "ab") as fh:
        fh.write(data)
    res = verify(path)
    if data:
        assert not res.ok or data.endswith(b"\n")
    if not res.ok and res.bad_line is not None:
        assert f"line {res.bad_line}" in res.message


@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
def test_signature_file(tmp_path_factory, data):
    pytest.importorskip("model_signing")
    from sdk.bundle import save_bundle
    from sdk.bundle.signing import SIGNATURE_NAME, generate_keypair, verify_signature
    from sdk.errors import SignatureError
    from tests.sdk.test_bundle import make_manifest, make_model

    d = _fresh_dir()
    generate_keypair(d / "k.pem", d / "k.pub")
    save_bundle(d / "b", make_manifest(), {"model.onnx": make_model()})
    (d / "b" / SIGNATURE_NAME).write_bytes(data)
    with pytest.raises(SignatureError):
        verify_signature(d / "b", [d / "k.pub"])
