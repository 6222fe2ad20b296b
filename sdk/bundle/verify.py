"""Verification of a bundle folder: manifest, paths, hashes, unlisted files, external data.

This is the one place that decides whether a folder may be handed to onnxruntime. The
order matters: paths are checked before a file is opened, and every SHA-256 is checked
before any ONNX file is parsed.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from pydantic import ValidationError

from sdk._log import logger
from sdk.bundle.external import check_external_data, load_model_proto
from sdk.bundle.hashing import file_sha256
from sdk.bundle.manifest import MANIFEST_NAME, Manifest
from sdk.bundle.paths import resolve_inside
from sdk.errors import BundleError, IntegrityError, UnsafePathError

MAX_MANIFEST_BYTES = 16 << 20
# Unlisted files with these endings could be model weights; they are refused, not ignored.
MODEL_SUFFIXES = (".onnx", ".ort", ".data", ".onnx_data", ".pb", ".bin", ".safetensors", ".weights")


def read_manifest(root: Path) -> Manifest:
    """Parse ``root/manifest.json``; BundleError (with pydantic's message) if it is not valid."""
    mpath = root / MANIFEST_NAME
    try:
        st = os.lstat(mpath)
    except FileNotFoundError:
        raise BundleError(f"{root} is not a bundle: it has no {MANIFEST_NAME}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{mpath} is a symlink; a bundle's manifest must be a regular file")
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{mpath} is not a regular file")
    if st.st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{mpath} is {st.st_size} bytes; a manifest is at most {MAX_MANIFEST_BYTES}")
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{mpath} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise BundleError(f"{mpath} nests JSON deeper than Python can parse; not a manifest") from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise BundleError(f"{mpath} is not a valid manifest: {exc}") from exc


def verify_files(root: Path, manifest: Manifest) -> None:
    """Every listed file exists, is a regular file inside ``root`` and matches its SHA-256."""
    if not manifest.files:
        raise BundleError(f"{root / MANIFEST_NAME} lists no files; a bundle pins the SHA-256 of every file "
                          "(write it with sdk.bundle.save_bundle)")
    unlisted = sorted(e.file for e in manifest.models.values() if e.file not in manifest.files)
    if unlisted:
        raise BundleError(f"model file(s) {unlisted} are not listed in 'files' of {root / MANIFEST_NAME}")
    for rel, expected in sorted(manifest.files.items()):
        path = resolve_inside(root, rel, what=f"file {rel!r}")
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise BundleError(f"file {rel!r} is listed in the manifest but missing from {root}") from None
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"file {rel!r} in {root} is not a regular file")
        got = file_sha256(path)
        if got != expected:
            raise IntegrityError(f"file {rel!r} in bundle {root} failed its SHA-256 check: expected {expected}, "
                                 f"got {got}; the file was modified or corrupted")


def check_unlisted(root: Path, manifest: Manifest) -> list[str]:
    """Files present but not in the manifest: refused if they could be model data, else warned about."""
    listed = set(manifest.files) | {MANIFEST_NAME, "bundle.sig"}  # bundle.sig: sdk.bundle.signing
    extra: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        names = list(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(names):
            rel = (rel_dir / name).as_posix()
            if rel not in listed:
                extra.append(rel)
    for rel in extra:
        if rel.lower().endswith(MODEL_SUFFIXES):
            if os.path.islink(root / rel):
                raise UnsafePathError(f"file {rel!r} in {root} is a symlink that the manifest does not list; "
                                      "an unlisted model or external-data file cannot be loaded")
            raise BundleError(f"file {rel!r} in {root} is not listed in the manifest; an unlisted model or "
                              "external-data file cannot be loaded (re-save the bundle to pin its hash, or remove it)")
    if extra:
        logger.warning("bundle %s holds files the manifest does not list (ignored): %s", root, ", ".join(extra))
    return extra


def check_models(root: Path, manifest: Manifest) -> dict[str, list[str]]:
    """Parse every listed .onnx file (no external data loaded) and check its external-data paths.

    Returns ``{model relpath: [external data relpaths]}``.
    """
    model_files = {e.file for e in manifest.models.values()}
    model_files |= {rel for rel in manifest.files if rel.lower().endswith(".onnx")}
    out: dict[str, list[str]] = {}
    for rel in sorted(model_files):
        proto = load_model_proto(root / rel, rel)
        out[rel] = check_external_data(root, rel, proto, manifest.files)
    return out


def verify_bundle_dir(root: Path) -> tuple[Manifest, dict[str, list[str]]]:
    """Full verification of a bundle folder; returns the manifest and the external-data map."""
    manifest = read_manifest(root)
    verify_files(root, manifest)
    check_unlisted(root, manifest)
    return manifest, check_models(root, manifest)
