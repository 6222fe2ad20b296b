"""Signed bundles (OpenSSF model-signing, key-based): sign, verify, and the trust policy
that refuses unsigned, wrongly signed and edited bundles before anything is loaded."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("model_signing", reason="extra 'signing' not installed")

from sdk.bundle import file_sha256, load_bundle, pack_bundle, save_bundle  # noqa: E402
from sdk.bundle.signing import SIGNATURE_NAME, set_trusted_keys, sign_bundle, verify_signature  # noqa: E402
from sdk.cli.main import main  # noqa: E402
from sdk.errors import SignatureError  # noqa: E402
from tests.sdk.test_bundle import make_manifest, make_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    from sdk.bundle.signing import generate_keypair

    d = tmp_path_factory.mktemp("keys")
    for name in ("a", "b"):
        generate_keypair(d / f"{name}.pem", d / f"{name}.pub")
    return {"priv": d / "a.pem", "pub": d / "a.pub", "other_priv": d / "b.pem", "other_pub": d / "b.pub"}


@pytest.fixture
def signed(tmp_path, keys) -> Path:
    b = tmp_path / "b"
    save_bundle(b, make_manifest(), {"model.onnx": make_model(), "vocab.txt": b"a\nb\n"})
    sign_bundle(b, keys["priv"])
    return b


@pytest.fixture(autouse=True)
def _no_process_policy():
    yield
    set_trusted_keys(None)


def test_keygen_modes(keys):
    assert keys["priv"].stat().st_mode & 0o777 == 0o600


def test_sign_and_verify(signed, keys, capsys):
    assert (signed / SIGNATURE_NAME).is_file()
    assert verify_signature(signed, [keys["other_pub"], keys["pub"]]) == keys["pub"]
    assert load_bundle(signed, trusted_keys=[keys["pub"]]).manifest.name == "adder"
    assert main(["bundle", "verify", str(signed), "--trusted-key", str(keys["pub"])]) == 0
    assert "signed by" in capsys.readouterr().out


def _rewrite_model_and_hash(b: Path) -> None:
    """What an attacker without the key can do: new weights, and the manifest updated to match."""
    save_model = make_model(np.array([9, 9, 9, 9], np.float32)).SerializeToString()
    (b / "model.onnx").write_bytes(save_model)
    m = json.loads((b / "manifest.json").read_text())
    m["files"]["model.onnx"] = file_sha256(b / "model.onnx")
    (b / "manifest.json").write_text(json.dumps(m))


def _raise_threshold(b: Path) -> None:
    m = json.loads((b / "manifest.json").read_text())
    m["extra"]["threshold"] = 0.99
    (b / "manifest.json").write_text(json.dumps(m))


TAMPER = {
    "unsigned": (lambda b: (b / SIGNATURE_NAME).unlink(), "unsigned"),
    "manifest edited": (_raise_threshold, "edited after signing: manifest.json"),
    "model and hash rewritten": (_rewrite_model_and_hash, "edited after signing: manifest.json, model.onnx"),
    "file added": (lambda b: (b / "extra.txt").write_text("x"), "added after signing: extra.txt"),
    "file removed": (lambda b: (b / "vocab.txt").unlink(), "removed after signing: vocab.txt"),
    "garbage signature": (lambda b: (b / SIGNATURE_NAME).write_bytes(b"\x00{garbage"), "not signed by a trusted key"),
    "json signature": (lambda b: (b / SIGNATURE_NAME).write_text('{"a": 1}'), "not signed by a trusted key"),
    "symlink added": (lambda b: os.symlink(b / "vocab.txt", b / "link.txt"), "symlink"),
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_tampering_is_refused_before_loading(signed, keys, case, monkeypatch, capsys):
    tamper, expect = TAMPER[case]
    tamper(signed)
    import sdk.bundle.bundle as bundle_mod

    def never(*a, **k):
        raise AssertionError("the bundle was read before its signature was checked")

    monkeypatch.setattr(bundle_mod, "verify_bundle_dir", never)
    with pytest.raises(SignatureError, match=expect):
        load_bundle(signed, trusted_keys=[keys["pub"]])
    monkeypatch.undo()
    assert main(["bundle", "verify", str(signed), "--trusted-key", str(keys["pub"])]) == 3
    assert expect.split(":")[0] in capsys.readouterr().err


def test_signed_by_another_key(tmp_path, keys):
    b = tmp_path / "b"
    save_bundle(b, make_manifest(), {"model.onnx": make_model()})
    sign_bundle(b, keys["other_priv"])
    with pytest.raises(SignatureError, match="not signed by a trusted key"):
        load_bundle(b, trusted_keys=[keys["pub"]])


def test_policy_from_env_and_option(signed, keys, tmp_path, monkeypatch, capsys):
    _raise_threshold(signed)
    load_bundle(signed)                                           # no policy: hashes only, still loads
    monkeypatch.setenv("EDGEWISE_TRUSTED_KEYS", f"{keys['other_pub']}{os.pathsep}{keys['pub']}")
    with pytest.raises(SignatureError):
        load_bundle(signed)
    monkeypatch.delenv("EDGEWISE_TRUSTED_KEYS")
    assert main(["inspect", str(signed), "--trusted-key", str(keys["pub"])]) == 3
    assert "manifest.json" in capsys.readouterr().err
    assert main(["inspect", str(signed), "--trusted-key", str(tmp_path / "missing.pub")]) == 2
    load_bundle(signed)                                           # main() cleared its policy


def test_signed_archive_round_trip(signed, keys, tmp_path):
    ewb = pack_bundle(signed, tmp_path / "b.ewb")
    assert load_bundle(ewb, trusted_keys=[keys["pub"]]).manifest.name == "adder"
    plain = tmp_path / "plain"
    save_bundle(plain, make_manifest(), {"model.onnx": make_model()})
    with pytest.raises(SignatureError, match="unsigned"):
        load_bundle(pack_bundle(plain, tmp_path / "plain.ewb"), trusted_keys=[keys["pub"]])


def test_medical_triage_takes_trusted_key(keys, tmp_path, capsys):
    bundle = REPO / "apps" / "medical_imaging" / "bundles" / "pneumonia-triage"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"not read")
    code = main(["medical", "triage", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--bundle", str(bundle),
                 "--trusted-key", str(keys["pub"])])
    assert code == 3 and "unsigned" in capsys.readouterr().err


def test_no_policy_never_imports_model_signing(signed):
    code = ("import sys; from sdk.bundle import load_bundle; load_bundle(sys.argv[1]); "
            "assert 'model_signing' not in sys.modules, 'model_signing imported without a policy'")
    env = {k: v for k, v in os.environ.items() if k != "EDGEWISE_TRUSTED_KEYS"}
    subprocess.run([sys.executable, "-c", code, str(signed)], check=True, env={**env, "PYTHONPATH": str(REPO)})


def test_every_difference_is_named(signed, keys):
    _raise_threshold(signed)
    (signed / "extra.txt").write_text("x")
    (signed / "vocab.txt").unlink()
    with pytest.raises(SignatureError) as err:
        verify_signature(signed, [keys["pub"]])
    assert str(err.value).endswith("edited after signing: manifest.json; added after signing: extra.txt; "
                                   "removed after signing: vocab.txt")


def test_manifest_swapped_after_the_signature_check(signed, keys, monkeypatch):
    import sdk.bundle.bundle as bundle_mod

    real = bundle_mod.verify_bundle_dir
    swapped = json.loads((signed / "manifest.json").read_text())
    swapped["extra"]["threshold"] = 0.99

    def swap_then_verify(root):      # a local process replaces manifest.json right after the check
        (root / "manifest.json").write_text(json.dumps(swapped))
        return real(root)

    monkeypatch.setattr(bundle_mod, "verify_bundle_dir", swap_then_verify)
    with pytest.raises(SignatureError, match="changed after its signature was checked"):
        load_bundle(signed, trusted_keys=[keys["pub"]])
