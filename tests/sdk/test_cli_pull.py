"""``edgewise pull``: JSON output and the exit codes scripts rely on (file:// URLs, no network)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from sdk.cli.main import EXIT_MODEL, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, main

DATA = b"onnx-ish bytes " * 1000


@pytest.fixture()
def catalog(tmp_path) -> Path:
    src = tmp_path / "src" / "tiny.onnx"
    src.parent.mkdir()
    src.write_bytes(DATA)
    good = hashlib.sha256(DATA).hexdigest()
    p = tmp_path / "catalog.json"
    p.write_text(json.dumps({"schema_version": "edgewise.catalog/1", "models": [
        {"name": "tiny", "url": src.as_uri(), "sha256": good, "size": len(DATA), "licence": "MIT"},
        {"name": "tampered", "url": src.as_uri(), "sha256": "0" * 64, "licence": "MIT"},
        {"name": "unpinned", "url": src.as_uri(), "filename": "u.onnx"},
    ]}))
    return p


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_pull_json(catalog, capsys, tmp_path):
    code, out, _ = run(capsys, "pull", "tiny", "--catalog", str(catalog), "--json")
    assert code == EXIT_OK
    res = json.loads(out)
    assert Path(res["path"]).read_bytes() == DATA and res["downloaded"] is True
    assert res["files"] == {"tiny.onnx": hashlib.sha256(DATA).hexdigest()}
    code, out, _ = run(capsys, "pull", "tiny", "--catalog", str(catalog), "--json", "--offline")
    assert code == EXIT_OK and json.loads(out)["downloaded"] is False
    code, out, _ = run(capsys, "pull", "tiny", "--catalog", str(catalog))
    assert code == EXIT_OK and "already cached and verified" in out


def test_pull_list_json(catalog, capsys):
    run(capsys, "pull", "tiny", "--catalog", str(catalog), "--json")
    code, out, _ = run(capsys, "pull", "--list", "--catalog", str(catalog), "--json")
    assert code == EXIT_OK
    models = {m["name"]: m for m in json.loads(out)["models"]}
    assert models["tiny"]["status"] == "cached" and models["yolox-nano"]["status"] == "missing"
    code, out, _ = run(capsys, "pull", "--list", "--catalog", str(catalog))
    assert code == EXIT_OK and "yolox-nano" in out and "--trust-on-first-use" in out


@pytest.mark.parametrize("argv, code, message", [
    (["tiny", "--offline"], EXIT_UNAVAILABLE, "offline mode is on"),
    (["tampered"], EXIT_MODEL, "failed its SHA-256 check"),
    (["unpinned"], EXIT_MODEL, "--trust-on-first-use"),
    (["nope"], EXIT_MODEL, "no model 'nope' in the catalog"),
    ([], EXIT_USAGE, "give a model NAME"),
])
def test_pull_exit_codes(catalog, capsys, argv, code, message):
    got, _, err = run(capsys, "pull", *argv, "--catalog", str(catalog))
    assert got == code and message in err


def test_offline_env(catalog, capsys, monkeypatch):
    monkeypatch.setenv("EDGEWISE_OFFLINE", "1")
    code, _, err = run(capsys, "pull", "tiny", "--catalog", str(catalog))
    assert code == EXIT_UNAVAILABLE and "EDGEWISE_OFFLINE=1" in err


def test_trust_on_first_use(catalog, capsys):
    code, out, _ = run(capsys, "pull", "unpinned", "--catalog", str(catalog), "--trust-on-first-use", "--json")
    assert code == EXIT_OK
    assert json.loads(out)["files"] == {"u.onnx": hashlib.sha256(DATA).hexdigest()}
    # recorded: now it verifies without the flag
    code, out, _ = run(capsys, "pull", "unpinned", "--catalog", str(catalog), "--json")
    assert code == EXIT_OK and json.loads(out)["downloaded"] is False


def test_bad_catalog_file(tmp_path, capsys):
    bad = tmp_path / "c.json"
    bad.write_text("{oops")
    code, _, err = run(capsys, "pull", "tiny", "--catalog", str(bad))
    assert code == EXIT_MODEL and "not readable JSON" in err
    code, _, err = run(capsys, "pull", "tiny", "--catalog", str(tmp_path / "missing.json"))
    assert code == EXIT_USAGE and "catalog file not found" in err


# --- pull --from: installing from a local copy (an offline device) ----------------------
FILES = {"onnx/encoder_model.onnx": b"enc" * 5000, "tokenizer.json": b'{"model": {}}', "config.json": b"{}"}


def _multi_catalog(tmp_path, pinned=True, tamper=None) -> Path:
    files = []
    for rel, data in FILES.items():
        digest = hashlib.sha256(data).hexdigest() if pinned else None
        if tamper == rel:
            digest = "1" * 64
        files.append({"relpath": rel, "url": f"https://example.invalid/{rel}", "sha256": digest, "size": len(data)})
    p = tmp_path / "multi.json"
    p.write_text(json.dumps({"models": [{"name": "multi", "files": files, "licence": "MIT"}]}))
    return p


def _source(tmp_path, kind) -> Path:
    import tarfile
    import zipfile

    folder = tmp_path / "copy" / "multi"
    for rel, data in FILES.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    if kind == "folder":
        return folder
    if kind == "zip":
        z = tmp_path / "multi.zip"
        with zipfile.ZipFile(z, "w") as zf:
            for rel, data in FILES.items():
                zf.writestr(f"multi/{rel}", data)     # one top-level folder, as a zipped export has
            zf.writestr("multi/../../evil.txt", b"never extracted")
        return z
    t = tmp_path / "multi.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        tf.add(folder, arcname="multi")
    return t


@pytest.mark.parametrize("kind", ["folder", "zip", "tar"])
def test_pull_from_local_copy(tmp_path, capsys, kind):
    cat, src = _multi_catalog(tmp_path), _source(tmp_path, kind)
    cache = tmp_path / "cache"
    code, out, _ = run(capsys, "pull", "multi", "--from", str(src), "--catalog", str(cat), "--cache-dir", str(cache),
                       "--json")
    assert code == EXIT_OK, out
    res = json.loads(out)
    assert res["imported"] is True and res["downloaded"] is False
    for rel, data in FILES.items():
        assert (cache / "models" / "multi" / rel).read_bytes() == data
    assert not (tmp_path / "evil.txt").exists() and not list(cache.rglob("evil.txt"))
    # a second import keeps the verified copy
    code, out, _ = run(capsys, "pull", "multi", "--from", str(src), "--catalog", str(cat), "--cache-dir", str(cache),
                       "--json")
    assert code == EXIT_OK and json.loads(out)["imported"] is False


def test_pull_from_refuses_tampered_or_incomplete_copies(tmp_path, capsys):
    src, cache = _source(tmp_path, "folder"), tmp_path / "cache"
    code, _, err = run(capsys, "pull", "multi", "--from", str(src), "--catalog",
                       str(_multi_catalog(tmp_path, tamper="tokenizer.json")), "--cache-dir", str(cache))
    assert code == EXIT_MODEL and "failed its SHA-256 check" in err
    assert not (cache / "models" / "multi" / "tokenizer.json").exists()
    assert not list(cache.rglob("*.part"))
    # unpinned: refused without --trust-on-first-use, recorded with it
    unpinned = str(_multi_catalog(tmp_path, pinned=False))
    code, _, err = run(capsys, "pull", "multi", "--from", str(src), "--catalog", unpinned, "--cache-dir", str(cache))
    assert code == EXIT_MODEL and "--trust-on-first-use" in err
    code, out, _ = run(capsys, "pull", "multi", "--from", str(src), "--catalog", unpinned, "--cache-dir", str(cache),
                       "--trust-on-first-use", "--json")
    assert code == EXIT_OK and json.loads(out)["files"]["config.json"] == hashlib.sha256(b"{}").hexdigest()
    # a file the catalog declares larger than it is, a missing file, a missing source
    (src / "config.json").write_bytes(b"{}" * 10)
    code, _, err = run(capsys, "pull", "multi", "--from", str(src), "--catalog", str(_multi_catalog(tmp_path)),
                       "--cache-dir", str(tmp_path / "c2"))
    assert code == EXIT_MODEL and "larger than the 2 bytes" in err
    (src / "config.json").unlink()
    code, _, err = run(capsys, "pull", "multi", "--from", str(src), "--catalog", str(_multi_catalog(tmp_path)),
                       "--cache-dir", str(tmp_path / "c3"))
    assert code == EXIT_MODEL and "missing ['config.json']" in err
    code, _, err = run(capsys, "pull", "multi", "--from", str(tmp_path / "nope"), "--catalog",
                       str(_multi_catalog(tmp_path)), "--cache-dir", str(tmp_path / "c4"))
    assert code == EXIT_USAGE and "no local copy" in err
