"""Bundles: save/load round trip, and every way a tampered or hostile bundle is refused."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.bundle import Bundle, Manifest, ModelEntry, Provenance, file_sha256, load_bundle, save_bundle
from sdk.errors import BundleError, IntegrityError, UnsafePathError
from sdk.preprocess import AddBatchDim, CastDtype, PreprocessSpec
from sdk.runtime import EngineOptions, TensorSpec

W = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)


def make_model(w: np.ndarray = W) -> onnx.ModelProto:
    """y = x + w, x: float32 [N, 4]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "add",
                              [x], [y], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def make_manifest(**kw) -> Manifest:
    base = dict(name="adder", version="1.0.0", task="regression", description="adds w",
                models={"model": ModelEntry(file="model.onnx")}, labels=["a", "b", "c", "d"],
                metrics={"mae": 0.0}, provenance=Provenance(dataset="none", licence="Apache-2.0"),
                extra={"threshold": 0.5})
    base.update(kw)
    return Manifest(**base)


@pytest.fixture()
def bundle_dir(tmp_path) -> Path:
    save_bundle(tmp_path / "b", make_manifest(), {"model.onnx": make_model(), "vocab.txt": b"a\nb\n"})
    return tmp_path / "b"


@pytest.fixture()
def no_ort(monkeypatch):
    """Fail the test if onnxruntime or onnx parsing is reached."""
    import onnxruntime

    def boom(*a, **k):
        pytest.fail("onnxruntime.InferenceSession was called on an unverified bundle")

    monkeypatch.setattr(onnxruntime, "InferenceSession", boom)
    monkeypatch.setattr("sdk.bundle.verify.load_model_proto",
                        lambda *a, **k: pytest.fail("ONNX parsed before hashes were checked"))


def rewrite_manifest(root: Path, **changes) -> None:
    data = json.loads((root / "manifest.json").read_text())
    data.update(changes)
    (root / "manifest.json").write_text(json.dumps(data))


def rehash(root: Path) -> None:
    """Pin the current bytes of every listed file (to get past the hash check on purpose)."""
    data = json.loads((root / "manifest.json").read_text())
    data["files"] = {rel: file_sha256(root / rel) for rel in data["files"]}
    (root / "manifest.json").write_text(json.dumps(data))


# --- round trip ----------------------------------------------------------------------
def test_save_load_round_trip(bundle_dir):
    b = load_bundle(bundle_dir)
    assert isinstance(b, Bundle)
    m = b.manifest
    assert m.schema_version == "edgewise.bundle/1"
    assert set(m.files) == {"model.onnx", "vocab.txt"}
    assert m.files["model.onnx"] == file_sha256(bundle_dir / "model.onnx")
    assert m.provenance.created_by.startswith("edgewise ")
    assert m.extra == {"threshold": 0.5} and m.labels == ["a", "b", "c", "d"]
    # the signature was read from the graph
    assert m.models["model"].inputs == [TensorSpec(name="x", dtype="float32", shape=["N", 4])]
    assert m.models["model"].outputs[0].name == "y"
    assert b.model_path() == bundle_dir / "model.onnx"
    assert b.file_path("vocab.txt").read_bytes() == b"a\nb\n"
    with pytest.raises(ValueError, match="not listed"):
        b.file_path("other.txt")
    with pytest.raises(ValueError, match="roles"):
        b.model_path("decoder")
    text = (bundle_dir / "manifest.json").read_text()
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert Manifest.model_validate_json(text) == m


def test_engine_runs_on_verified_bytes(bundle_dir, monkeypatch):
    b = load_bundle(bundle_dir)
    with b.engine(options=EngineOptions(warmup=0)) as eng:
        x = np.ones((2, 4), np.float32)
        np.testing.assert_allclose(eng.run({"x": x})["y"], x + W)
    seen = []
    import sdk.runtime

    monkeypatch.setattr(sdk.runtime, "Engine", lambda model, options=None, label=None: seen.append(model) or "engine")
    assert b.engine() == "engine"
    assert isinstance(seen[0], bytes) and seen[0] == (bundle_dir / "model.onnx").read_bytes()


def test_file_swapped_between_load_and_engine(bundle_dir, monkeypatch):
    b = load_bundle(bundle_dir)
    onnx.save_model(make_model(W * 2), str(bundle_dir / "model.onnx"))  # swapped after verification
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: pytest.fail("ORT reached"))
    with pytest.raises(IntegrityError, match="changed after it was verified"):
        b.engine()


def test_preprocessor_from_manifest(tmp_path):
    spec = PreprocessSpec(ops=[CastDtype(dtype="float32"), AddBatchDim()])
    b = save_bundle(tmp_path / "p", make_manifest(preprocess=spec), {"model.onnx": make_model()})
    again = load_bundle(tmp_path / "p")
    assert again.manifest.preprocess == spec
    out = again.preprocessor()(np.arange(4, dtype=np.uint8))
    assert out.dtype == np.float32 and out.shape == (1, 4)
    assert b.manifest == again.manifest


def test_preprocessor_missing_is_a_bundle_error(bundle_dir):
    with pytest.raises(BundleError, match="declares no preprocessing"):
        load_bundle(bundle_dir).preprocessor()


def test_save_from_path_and_overwrite(tmp_path, bundle_dir):
    src = tmp_path / "src.onnx"
    onnx.save_model(make_model(), str(src))
    out = tmp_path / "c"
    save_bundle(out, make_manifest(), {"model.onnx": src})
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_bundle(out, make_manifest(), {"model.onnx": src})
    b = save_bundle(out, make_manifest(version="2.0.0"), {"model.onnx": src}, overwrite=True)
    assert b.manifest.version == "2.0.0" and load_bundle(out).manifest.version == "2.0.0"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp folders left behind"


@pytest.mark.parametrize("files, match", [
    ({"vocab.txt": b"x"}, "not in 'files'"),
    ({"model.onnx": b"x", "../up.txt": b"x"}, "climbs out"),
    ({"model.onnx": b"x", "/abs.txt": b"x"}, "absolute"),
    ({"model.onnx": b"x", "a\\b.txt": b"x"}, "backslash"),
    ({"model.onnx": b"x", "manifest.json": b"{}"}, "written by save_bundle"),
])
def test_save_rejects_bad_files(tmp_path, files, match):
    with pytest.raises(ValueError, match=match):
        save_bundle(tmp_path / "x", make_manifest(), files)
    assert not (tmp_path / "x").exists()


def test_save_refuses_unsafe_external_data_and_leaves_nothing(tmp_path):
    m = make_model()
    t = m.graph.initializer[0]
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.external_data.add(key="location", value="/etc/passwd")
    with pytest.raises(UnsafePathError, match="absolute"):
        save_bundle(tmp_path / "x", make_manifest(), {"model.onnx": m})
    assert list(tmp_path.iterdir()) == []


# --- tampering and bad input ---------------------------------------------------------
def _flip_byte(root: Path) -> None:
    p = root / "model.onnx"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))


def _delete_model(root: Path) -> None:
    (root / "model.onnx").unlink()


def _extra_onnx(root: Path) -> None:
    onnx.save_model(make_model(), str(root / "sneaky.onnx"))


def _extra_data(root: Path) -> None:
    (root / "weights.data").write_bytes(b"\0" * 16)


def _symlink_file(root: Path) -> None:
    real = root.parent / "elsewhere.txt"
    real.write_bytes(b"a\nb\n")
    (root / "vocab.txt").unlink()
    os.symlink(real, root / "vocab.txt")


def _symlink_dir(root: Path) -> None:
    (root.parent / "d").mkdir()
    (root.parent / "d" / "vocab.txt").write_bytes(b"a\nb\n")
    rewrite_manifest(root, files={**json.loads((root / "manifest.json").read_text())["files"],
                                  "sub/vocab.txt": file_sha256(root.parent / "d" / "vocab.txt")})
    os.symlink(root.parent / "d", root / "sub")


def _misspelt_key(root: Path) -> None:
    rewrite_manifest(root, lables=["x"])


def _wrong_schema(root: Path) -> None:
    rewrite_manifest(root, schema_version="edgewise.bundle/9")


def _bad_json(root: Path) -> None:
    (root / "manifest.json").write_text("{not json")


def _no_manifest(root: Path) -> None:
    (root / "manifest.json").unlink()


def _files_empty(root: Path) -> None:
    rewrite_manifest(root, files={})


def _model_not_listed(root: Path) -> None:
    rewrite_manifest(root, files={"vocab.txt": file_sha256(root / "vocab.txt")})


def _listed_path_escapes(root: Path) -> None:
    data = json.loads((root / "manifest.json").read_text())
    data["files"]["../outside.txt"] = "0" * 64
    (root / "manifest.json").write_text(json.dumps(data))


def _bad_sha_format(root: Path) -> None:
    data = json.loads((root / "manifest.json").read_text())
    data["files"]["vocab.txt"] = "abc"
    (root / "manifest.json").write_text(json.dumps(data))


def _truncated_onnx(root: Path) -> None:
    p = root / "model.onnx"
    p.write_bytes(p.read_bytes()[:40])
    rehash(root)


def _manifest_symlink(root: Path) -> None:
    (root.parent / "m.json").write_text((root / "manifest.json").read_text())
    (root / "manifest.json").unlink()
    os.symlink(root.parent / "m.json", root / "manifest.json")


TAMPER = [
    pytest.param(_flip_byte, IntegrityError, r"'model.onnx'.*expected [0-9a-f]{64}, got [0-9a-f]{64}", id="bit-flip"),
    pytest.param(_delete_model, BundleError, "'model.onnx' is listed in the manifest but missing", id="missing-file"),
    pytest.param(_extra_onnx, BundleError, "'sneaky.onnx'.*not listed", id="unlisted-onnx"),
    pytest.param(_extra_data, BundleError, "'weights.data'.*not listed", id="unlisted-external-data"),
    pytest.param(lambda r: os.symlink("/etc/hostname", r / "w.bin"), UnsafePathError, "'w.bin' .*symlink",
                 id="unlisted-symlink-data"),
    pytest.param(_symlink_file, UnsafePathError, "vocab.txt is a symlink", id="symlinked-file"),
    pytest.param(_symlink_dir, UnsafePathError, "sub is a symlink", id="symlinked-dir"),
    pytest.param(_misspelt_key, BundleError, "lables", id="misspelt-key"),
    pytest.param(_wrong_schema, BundleError, "schema_version", id="wrong-schema"),
    pytest.param(_bad_json, BundleError, "not valid JSON", id="bad-json"),
    pytest.param(_no_manifest, BundleError, "no manifest.json", id="no-manifest"),
    pytest.param(_files_empty, BundleError, "lists no files", id="files-empty"),
    pytest.param(_model_not_listed, BundleError, "not listed in 'files'", id="model-not-listed"),
    pytest.param(_listed_path_escapes, BundleError, "climbs out", id="listed-path-escapes"),
    pytest.param(_bad_sha_format, BundleError, "64 hex digits", id="bad-sha-format"),
    pytest.param(_manifest_symlink, UnsafePathError, "symlink", id="manifest-symlink"),
]


@pytest.mark.parametrize("tamper, exc, match", TAMPER)
def test_tampered_bundle_refused_before_onnxruntime(bundle_dir, no_ort, tamper, exc, match):
    tamper(bundle_dir)
    with pytest.raises(exc, match=match):
        load_bundle(bundle_dir)


def test_truncated_onnx_with_matching_hash_is_a_bundle_error(bundle_dir):
    _truncated_onnx(bundle_dir)
    with pytest.raises(BundleError, match="not a valid ONNX file"):
        load_bundle(bundle_dir)


def test_unlisted_other_file_only_warns(bundle_dir, caplog):
    (bundle_dir / "README.txt").write_text("hi")
    with caplog.at_level("WARNING", logger="edgewise"):
        load_bundle(bundle_dir)
    assert "README.txt" in caplog.text


# --- external data -------------------------------------------------------------------
def _external_bundle(root: Path, location: str = "weights.bin") -> None:
    """A bundle whose initializer lives in an external file, pinned in the manifest."""
    root.mkdir()
    m = make_model()
    onnx.save_model(m, str(root / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    if location != "weights.bin":
        proto = onnx.load(str(root / "model.onnx"), load_external_data=False)
        for e in proto.graph.initializer[0].external_data:
            if e.key == "location":
                e.value = location
        onnx.save_model(proto, str(root / "model.onnx"))
    man = make_manifest(models={"model": ModelEntry(file="model.onnx")},
                        files={"model.onnx": file_sha256(root / "model.onnx"),
                               "weights.bin": file_sha256(root / "weights.bin")})
    (root / "manifest.json").write_text(man.to_json())


def test_external_data_bundle_loads_and_runs(tmp_path):
    _external_bundle(tmp_path / "e")
    b = load_bundle(tmp_path / "e")
    assert b.has_external_data()
    with b.engine(options=EngineOptions(warmup=0)) as eng:
        np.testing.assert_allclose(eng.run(np.zeros((1, 4), np.float32))["y"], W[None])
    # save_bundle accepts it too, from paths
    b2 = save_bundle(tmp_path / "s", make_manifest(),
                     {"model.onnx": tmp_path / "e" / "model.onnx", "weights.bin": tmp_path / "e" / "weights.bin"})
    assert b2.has_external_data() and set(b2.manifest.files) == {"model.onnx", "weights.bin"}


def _ext_setup_outside(root: Path) -> str:
    (root.parent / "outside.bin").write_bytes(W.tobytes())
    return "../outside.bin"


def _ext_setup_symlink(root: Path) -> str:
    (root.parent / "real").mkdir()
    (root.parent / "real" / "w.bin").write_bytes(W.tobytes())
    os.symlink(root.parent / "real", root / "link")
    return "link/w.bin"


def _ext_setup_symlink_file(root: Path) -> str:
    os.symlink(root / "weights.bin", root / "alias.txt")  # a name the unlisted-file rule only warns about
    return "alias.txt"


def _ext_setup_unlisted(root: Path) -> str:
    shutil.copy(root / "weights.bin", root / "copy.txt")
    return "copy.txt"


@pytest.mark.parametrize("setup, match", [
    pytest.param(lambda r: "/etc/passwd", "absolute", id="absolute"),
    pytest.param(_ext_setup_outside, "climbs out", id="dotdot"),
    pytest.param(lambda r: "sub/../weights.bin", "climbs out", id="dotdot-inside"),
    pytest.param(lambda r: "C:/weights.bin", "absolute", id="windows-drive"),
    pytest.param(lambda r: "sub\\weights.bin", "backslash", id="backslash"),
    pytest.param(_ext_setup_symlink, "link is a symlink", id="through-symlink-dir"),
    pytest.param(_ext_setup_symlink_file, "alias.txt is a symlink", id="symlink-file"),
    pytest.param(_ext_setup_unlisted, "not listed", id="unlisted-target"),
])
def test_unsafe_external_data_refused(tmp_path, setup, match):
    root = tmp_path / "e"
    _external_bundle(root)
    location = setup(root)
    proto = onnx.load(str(root / "model.onnx"), load_external_data=False)
    for e in proto.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = location
    onnx.save_model(proto, str(root / "model.onnx"))
    rehash(root)
    with pytest.raises(UnsafePathError) as info:
        load_bundle(root)
    msg = str(info.value)
    assert "'model.onnx'" in msg and "'w'" in msg and repr(location) in msg and match in msg


def test_external_data_range_past_end(tmp_path):
    root = tmp_path / "e"
    _external_bundle(root)
    (root / "weights.bin").write_bytes(b"\0" * 4)  # shorter than the 16 bytes the tensor needs
    rehash(root)
    with pytest.raises(BundleError, match="past the end"):
        load_bundle(root)


# --- manifest validation -------------------------------------------------------------
@pytest.mark.parametrize("kw, ok", [
    ({}, True),
    ({"files": {"model.onnx": "a" * 64}}, True),
    ({"files": {"other.onnx": "a" * 64}}, False),            # model file not listed
    ({"files": {"model.onnx": "A" * 64}}, True),             # normalised to lower case
    ({"files": {"model.onnx": "xyz"}}, False),
    ({"files": {"model.onnx": "a" * 64, "../x": "a" * 64}}, False),
    ({"models": {}}, False),
    ({"name": ""}, False),
    ({"metrics": {"auc": "high"}}, False),
    ({"provenance": {"dataset": "x", "licence": "MIT", "parent_sha256": "b" * 64}}, True),
    ({"provenance": {"datset": "x"}}, False),
])
def test_manifest_validation_table(kw, ok):
    data = make_manifest().model_dump(mode="json")
    data.update(kw)
    if ok:
        Manifest.model_validate(data)
    else:
        with pytest.raises(ValueError):
            Manifest.model_validate(data)


def test_model_entry_rejects_unsafe_file():
    with pytest.raises(ValueError, match="absolute"):
        ModelEntry(file="/tmp/m.onnx")
