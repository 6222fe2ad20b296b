"""Archive caps (issue 14): members checked against the manifest's files and hashes while they
are unpacked, zip bombs refused before a byte is written, nothing left behind when refused."""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from sdk.bundle.archive import unpack_bundle
from sdk.errors import BundleError, IntegrityError


def _arc(path: Path, files: dict[str, bytes], listed: dict[str, str] | None = None) -> Path:
    listed = listed if listed is not None else {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps({"name": "x", "files": listed}))
        for k, v in files.items():
            zf.writestr(k, v)
    return path


def test_zip_bomb_refused_before_writing(tmp_path):
    arc = _arc(tmp_path / "bomb.ewb", {"model.onnx": b"\0" * (64 << 20)})   # 64 MiB of zeros, ~64 KiB packed
    assert arc.stat().st_size < 1 << 20
    with pytest.raises(BundleError, match="more than 200:1"):
        unpack_bundle(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_member_hash_and_listing_checked_while_unpacking(tmp_path):
    good = {"model.onnx": b"weights" * 100}
    unpacked = unpack_bundle(_arc(tmp_path / "ok.ewb", good), tmp_path / "ok")
    assert (unpacked / "model.onnx").read_bytes() == good["model.onnx"]
    with pytest.raises(IntegrityError, match="manifest declares"):
        unpack_bundle(_arc(tmp_path / "bad.ewb", good, {"model.onnx": "0" * 64}), tmp_path / "bad")
    with pytest.raises(BundleError, match="not listed"):
        unpack_bundle(_arc(tmp_path / "extra.ewb", {**good, "extra.bin": b"x"},
                           {"model.onnx": hashlib.sha256(good["model.onnx"]).hexdigest()}), tmp_path / "extra")
    assert not (tmp_path / "bad").exists() and not (tmp_path / "extra").exists()
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_the_signature_travels_unlisted_but_capped(tmp_path):
    """bundle.sig signs manifest.json, so it cannot be listed there: it is the one unlisted member
    accepted, and only up to the size a signature can have."""
    good = {"model.onnx": b"weights" * 100}
    listed = {"model.onnx": hashlib.sha256(good["model.onnx"]).hexdigest()}
    out = unpack_bundle(_arc(tmp_path / "signed.ewb", {**good, "bundle.sig": b"{}"}, listed), tmp_path / "s")
    assert (out / "bundle.sig").read_bytes() == b"{}"
    with pytest.raises(BundleError, match="a signature is at most"):
        unpack_bundle(_arc(tmp_path / "big.ewb", {**good, "bundle.sig": b" " * (2 << 20)}, listed), tmp_path / "b")
    assert not (tmp_path / "b").exists()
