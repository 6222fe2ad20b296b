"""``.ewb`` archives: deterministic packing, cached unpacking, and hostile archives refused."""
from __future__ import annotations

import os
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.bundle import Manifest, ModelEntry, file_sha256, load_bundle, pack_bundle, save_bundle, unpack_bundle
from sdk.errors import BundleError, IntegrityError, UnsafePathError


def _model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    g = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "mul", [x], [y], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.fixture()
def bundle_dir(tmp_path) -> Path:
    man = Manifest(name="mul", version="0.1", task="test", models={"model": ModelEntry(file="model.onnx")})
    save_bundle(tmp_path / "b", man, {"model.onnx": _model(), "assets/labels.txt": b"a\nb\n"})
    return tmp_path / "b"


def test_pack_is_deterministic_and_round_trips(bundle_dir, tmp_path):
    (bundle_dir / "notes.txt").write_text("unlisted, left out")
    a = pack_bundle(bundle_dir, tmp_path / "a.ewb")
    b = pack_bundle(bundle_dir, tmp_path / "sub" / "b.ewb")
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as zf:
        assert zf.namelist() == ["manifest.json", "assets/labels.txt", "model.onnx"]
    out = unpack_bundle(a, tmp_path / "u")
    assert (out / "model.onnx").read_bytes() == (bundle_dir / "model.onnx").read_bytes()
    assert not (out / "notes.txt").exists()
    assert load_bundle(out).manifest == load_bundle(bundle_dir).manifest


def test_load_archive_unpacks_once_into_home(bundle_dir, tmp_path):
    arc = pack_bundle(bundle_dir, tmp_path / "m.ewb")
    b = load_bundle(arc)
    home = Path(os.environ["EDGEWISE_HOME"])
    assert b.path == home / "unpacked" / file_sha256(arc)
    assert b.file_path("assets/labels.txt").read_text() == "a\nb\n"
    mtime = (b.path / "model.onnx").stat().st_mtime_ns
    assert load_bundle(arc).path == b.path and (b.path / "model.onnx").stat().st_mtime_ns == mtime
    # a tampered cached copy is thrown away and unpacked again from the archive
    (b.path / "model.onnx").write_bytes(b"tampered")
    again = load_bundle(arc)
    assert file_sha256(again.model_path()) == again.manifest.files["model.onnx"]


def test_pack_refuses_a_tampered_bundle(bundle_dir, tmp_path):
    (bundle_dir / "assets" / "labels.txt").write_text("changed")
    with pytest.raises(IntegrityError, match="labels.txt"):
        pack_bundle(bundle_dir, tmp_path / "x.ewb")
    assert not (tmp_path / "x.ewb").exists()


def _zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" is what one test builds on purpose
        for info, data in members:
            zf.writestr(info, data)
    return path


def _symlink_member(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def _fifo_member(name: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    return info, b""


MANIFEST = ("manifest.json", b"{}")


@pytest.mark.parametrize("members, exc, match", [
    pytest.param([MANIFEST, ("../evil.txt", b"x")], UnsafePathError, "climbs out", id="dotdot"),
    pytest.param([MANIFEST, ("a/../../evil.txt", b"x")], UnsafePathError, "climbs out", id="nested-dotdot"),
    pytest.param([MANIFEST, ("/etc/evil", b"x")], UnsafePathError, "absolute", id="absolute"),
    pytest.param([MANIFEST, ("C:/evil", b"x")], UnsafePathError, "absolute", id="windows-drive"),
    pytest.param([MANIFEST, ("a\\..\\..\\evil", b"x")], UnsafePathError, "backslash", id="backslash"),
    pytest.param([MANIFEST, _symlink_member("link", "/etc/passwd")], UnsafePathError, "symlink", id="symlink"),
    pytest.param([MANIFEST, _fifo_member("fifo")], UnsafePathError, "not a regular file", id="fifo"),
    pytest.param([MANIFEST, ("a.txt", b"1"), ("a.txt", b"2")], BundleError, "twice", id="duplicate"),
    pytest.param([("model.onnx", b"x")], BundleError, "no manifest.json", id="no-manifest"),
])
def test_hostile_archives_refused(tmp_path, members, exc, match):
    arc = _zip(tmp_path / "bad.ewb", members)
    with pytest.raises(exc, match=match):
        unpack_bundle(arc, tmp_path / "out")
    with pytest.raises(exc, match=match):
        load_bundle(arc)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path.parent / "evil.txt").exists()


def test_not_a_zip(tmp_path):
    p = tmp_path / "x.ewb"
    p.write_bytes(b"definitely not a zip")
    with pytest.raises(BundleError, match="not a readable bundle archive"):
        load_bundle(p)


def test_bare_onnx_is_not_a_bundle(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save_model(_model(), str(p))
    with pytest.raises(BundleError, match="bare model, not a bundle"):
        load_bundle(p)
    with pytest.raises(FileNotFoundError, match="no bundle at"):
        load_bundle(tmp_path / "nothing")


def test_size_limit(bundle_dir, tmp_path):
    arc = pack_bundle(bundle_dir, tmp_path / "m.ewb")
    with pytest.raises(BundleError, match="the limit is 100"):
        unpack_bundle(arc, tmp_path / "out", max_total_bytes=100)


def test_member_that_lies_about_its_size(tmp_path):
    """A header declaring fewer bytes than the member holds (zip-bomb trick) is refused."""
    payload = b"A" * 100_000
    arc = _zip(tmp_path / "bomb.ewb", [MANIFEST, ("big.bin", payload)])
    raw = bytearray(arc.read_bytes())
    with zipfile.ZipFile(arc) as zf:
        info = zf.getinfo("big.bin")
    # local header: uncompressed size at +22; central directory entry: at +24
    struct.pack_into("<I", raw, info.header_offset + 22, 10)
    cd = raw.find(b"PK\x01\x02", raw.find(b"PK\x01\x02") + 4)  # second entry = big.bin
    struct.pack_into("<I", raw, cd + 24, 10)
    arc.write_bytes(bytes(raw))
    # zipfile stops at the declared size and the CRC fails; either way nothing is kept
    with pytest.raises(BundleError, match=r"'big.bin' (is corrupt|unpacks to more)"):
        unpack_bundle(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unpack_refuses_non_empty_destination(bundle_dir, tmp_path):
    arc = pack_bundle(bundle_dir, tmp_path / "m.ewb")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    with pytest.raises(FileExistsError):
        unpack_bundle(arc, tmp_path / "d")
