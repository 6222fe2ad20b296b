"""Signed bundles, in the OpenSSF model-signing format (``pip install 'edgewise[signing]'``).

``sign_bundle(dir, key)`` signs every file of a bundle folder, ``manifest.json`` included,
with an elliptic-curve private key (PEM), using the `model-signing` library's key-based
signer: the signature is a Sigstore bundle (DSSE envelope over an in-toto statement that
lists each file's SHA-256), written to ``<dir>/bundle.sig``. No network, no transparency
log: trust comes from the public keys you name.

A *trust policy* is a list of public keys (PEM). It is set per call
(``load_bundle(path, trusted_keys=[...])``), per process (:func:`set_trusted_keys`, which
the ``--trusted-key`` option of every command calls), or by ``EDGEWISE_TRUSTED_KEYS``
(paths separated by ``os.pathsep``). When one is set, :func:`sdk.bundle.load_bundle`
checks the signature before it reads the manifest, so an unsigned bundle, one signed by
another key, and one edited after signing (a model file, ``manifest.json``, a file added
or removed) are refused with :class:`sdk.errors.SignatureError` before onnxruntime reads
a byte; the manifest it then loads must be the very bytes that were signed
(:func:`bind_manifest`), and the model bytes handed to onnxruntime are checked against that
manifest once more by ``Bundle.engine``. Without a policy nothing changes (bundles are checked against their manifest's
hashes only) and `model-signing` is never imported.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from sdk.errors import BundleError, SignatureError, require

SIGNATURE_NAME = "bundle.sig"
TRUST_ENV = "EDGEWISE_TRUSTED_KEYS"
MAX_SIGNATURE_BYTES = 1 << 20
_process_keys: list[Path] | None = None


# --- the trust policy ---------------------------------------------------------------------
def _check_keys(keys: Iterable[str | os.PathLike], where: str) -> list[Path]:
    out = []
    for k in keys:
        p = Path(k).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"trusted key {p} (from {where}) is not a file; expected a PEM public key")
        out.append(p)
    return out


def set_trusted_keys(keys: Sequence[str | os.PathLike] | None) -> None:
    """Set (a list of public-key paths) or clear (``None``) the process-wide trust policy."""
    global _process_keys
    _process_keys = None if keys is None else _check_keys(keys, "--trusted-key")


def trusted_keys(explicit: Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """The keys in force: ``explicit``, else the process-wide ones, else ``EDGEWISE_TRUSTED_KEYS``."""
    if explicit is not None:
        return _check_keys(explicit, "trusted_keys")
    if _process_keys is not None:
        return list(_process_keys)
    env = os.environ.get(TRUST_ENV, "").strip()
    return _check_keys([k for k in env.split(os.pathsep) if k.strip()], TRUST_ENV) if env else []


# --- signing and verifying ------------------------------------------------------------------
def _lib():
    require("OpenSSL", "signing", "signed bundles (model-signing needs pyopenssl)")
    return require("model_signing.signing", "signing", "signed bundles"), \
        require("model_signing.verifying", "signing", "signed bundles"), \
        require("model_signing.hashing", "signing", "signed bundles")


def _hashing_config(hashing):
    return hashing.Config().set_ignored_paths(paths=[SIGNATURE_NAME], ignore_git_paths=True)


def sign_bundle(bundle_dir: str | os.PathLike, private_key: str | os.PathLike, password: str | None = None) -> Path:
    """Verify ``bundle_dir`` against its manifest, then sign all its files; returns the signature path."""
    from sdk.bundle.verify import verify_bundle_dir

    root = Path(bundle_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no bundle folder at {root}")
    key = Path(private_key)
    if not key.is_file():
        raise FileNotFoundError(f"no private key at {key}; expected an EC private key in PEM")
    verify_bundle_dir(root)          # never sign a bundle that does not match its own manifest
    signing, _, hashing = _lib()
    sig = root / SIGNATURE_NAME
    tmp = root.parent / f".{root.name}.{SIGNATURE_NAME}.{os.getpid()}.tmp"   # outside the signed folder
    try:
        signing.Config().set_hashing_config(_hashing_config(hashing)).use_elliptic_key_signer(
            private_key=key, password=password).sign(root, tmp)
    except (ValueError, TypeError) as exc:
        tmp.unlink(missing_ok=True)
        raise BundleError(f"could not sign {root} with {key}: {exc} (expected an unencrypted EC private key "
                          "in PEM, or pass its password)") from exc
    os.replace(tmp, sig)
    return sig


def _describe(actual, expected) -> str:
    """Which files were edited, added or removed (from model-signing's two manifests)."""
    got = {d.identifier: d.digest for d in actual.resource_descriptors()}
    want = {d.identifier: d.digest for d in expected.resource_descriptors()}
    parts = []
    for what, names in (("edited after signing", [n for n in sorted(got.keys() & want.keys()) if got[n] != want[n]]),
                        ("added after signing", sorted(got.keys() - want.keys())),
                        ("removed after signing", sorted(want.keys() - got.keys()))):
        if names:
            parts.append(f"{what}: {', '.join(names)}")
    return "; ".join(parts)


def _verifier(verifying, key: Path):
    """model-signing's key-based verifier, remembering which files differ when it refuses."""

    class _Config(verifying.Config):
        diff = ""
        signed = None

        def _guess_hashing_config(self, source_manifest):  # called with the manifest the signature holds
            self.signed = source_manifest
            return super()._guess_hashing_config(source_manifest)

        def _get_manifest_diff(self, actual, expected):  # called only on a mismatch
            self.diff = _describe(actual, expected)
            return super()._get_manifest_diff(actual, expected)

    return _Config().use_elliptic_key_verifier(public_key=key)


def verify_signature(bundle_dir: str | os.PathLike, keys: Sequence[str | os.PathLike]) -> Path:
    """Check ``<bundle_dir>/bundle.sig`` against the folder's files and one of ``keys``.

    Returns the key that verified; raises SignatureError naming what failed (unsigned,
    unreadable signature, not signed by a trusted key, which files were edited, added or
    removed).
    """
    return _verify(bundle_dir, keys)[0]


def _verify(bundle_dir: str | os.PathLike, keys: Sequence[str | os.PathLike]) -> tuple[Path, dict[str, str]]:
    """(the key that verified, {file: signed SHA-256 hex})."""
    root = Path(bundle_dir)
    keys = _check_keys(keys, "trusted keys")
    if not keys:
        raise ValueError("verify_signature needs at least one trusted public key")
    sig = root / SIGNATURE_NAME
    if sig.is_symlink() or not sig.is_file():
        raise SignatureError(f"bundle {root} is unsigned: no regular {SIGNATURE_NAME}, and a trust policy is set "
                             f"({len(keys)} trusted key(s)); sign it with `edgewise bundle sign {root} --key KEY.pem`")
    if sig.stat().st_size > MAX_SIGNATURE_BYTES:
        raise SignatureError(f"{sig} is {sig.stat().st_size} bytes; a signature is at most {MAX_SIGNATURE_BYTES}")
    _, verifying, _ = _lib()
    failures = []
    for key in keys:
        try:
            cfg = _verifier(verifying, key)
            cfg.verify(root, sig)
            signed = {d.identifier: d.digest.digest_hex for d in cfg.signed.resource_descriptors()} \
                if cfg.signed is not None else {}
            return key, signed
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            msg = str(exc)
            if "Cannot use" in msg:
                raise SignatureError(f"bundle {root} holds a symlink or special file, which a signed bundle "
                                     f"may not: {msg}") from exc
            if "Key mismatch" in msg:
                failures.append(f"{key.name}: not signed by this key")
            elif "Signature mismatch" in msg:
                raise SignatureError(f"bundle {root} was signed by {key} but does not match its signature: "
                                     f"{cfg.diff or msg}") from exc
            elif "public key" in msg.lower() and "PEM" in msg:
                failures.append(f"{key.name}: not a PEM public key ({msg})")
            else:
                failures.append(f"{key.name}: signature rejected ({type(exc).__name__}: {msg or 'malformed'})")
        except Exception as exc:  # noqa: BLE001 - cryptography's InvalidSignature and friends
            failures.append(f"{key.name}: signature rejected ({type(exc).__name__}: {exc or 'invalid signature'})")
    raise SignatureError(f"bundle {root} is not signed by a trusted key: " + "; ".join(failures))


def check_policy(bundle_dir: Path, explicit: Sequence[str | os.PathLike] | None = None) -> dict[str, str] | None:
    """Enforce the trust policy on a bundle folder (no-op without one, returning None);
    returns the signed SHA-256 of each file, for :func:`bind_manifest`."""
    keys = trusted_keys(explicit)
    if not keys:
        return None
    return _verify(bundle_dir, keys)[1]


def bind_manifest(bundle_dir: Path, signed: dict[str, str], manifest) -> None:
    """Close the window between the signature check and the manifest read: the manifest the
    bundle was loaded with must be the signed bytes (a local process swapping
    ``manifest.json`` in between is caught). The model files are then bound through the
    manifest's hashes, which ``Bundle.engine`` checks again on the bytes it hands over."""
    import hashlib
    import json

    from sdk.bundle.manifest import MANIFEST_NAME, Manifest

    data = (Path(bundle_dir) / MANIFEST_NAME).read_bytes()
    if hashlib.sha256(data).hexdigest() != signed.get(MANIFEST_NAME):
        raise SignatureError(f"{MANIFEST_NAME} in {bundle_dir} changed after its signature was checked")
    if Manifest.model_validate(json.loads(data)) != manifest:
        raise SignatureError(f"{MANIFEST_NAME} in {bundle_dir} changed while the bundle was loaded")


def generate_keypair(private_path: str | os.PathLike, public_path: str | os.PathLike) -> None:
    """Write a new P-256 key pair (PEM): the private key 0600, the public key 0644."""
    crypto = require("cryptography.hazmat.primitives.asymmetric.ec", "signing", "generating signing keys")
    ser = require("cryptography.hazmat.primitives.serialization", "signing", "generating signing keys")
    priv, pub = Path(private_path), Path(public_path)
    for p in (priv, pub):
        if p.exists():
            raise FileExistsError(f"{p} exists; refusing to overwrite a key")
    k = crypto.generate_private_key(crypto.SECP256R1())
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(k.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
    pub.write_bytes(k.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo))
