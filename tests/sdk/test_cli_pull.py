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
