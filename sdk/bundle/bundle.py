"""Bundles: save a folder of ONNX files + manifest, load it back verified, run it.

``load_bundle`` verifies every SHA-256 before onnxruntime reads a byte (and, when a trust
policy is set, the bundle's signature before anything else: :mod:`sdk.bundle.signing`), and
``Bundle.engine`` hands onnxruntime the very bytes it re-hashed (for models without
external data), so a file swapped between the check and the load is still caught.
"""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Mapping

from sdk._log import logger
from sdk.bundle.archive import unpack_bundle
from sdk.bundle.hashing import CHUNK, bytes_sha256, file_sha256
from sdk.bundle.home import edgewise_home, sdk_version
from sdk.bundle.manifest import MANIFEST_NAME, Manifest, ModelEntry
from sdk.bundle.paths import check_relpath
from sdk.bundle.verify import verify_bundle_dir
from sdk.errors import BundleError, IntegrityError

FileSource = Any  # str | os.PathLike | bytes | onnx.ModelProto


class Bundle:
    """A verified bundle folder. Get one from :func:`load_bundle` or :func:`save_bundle`."""

    def __init__(self, path: Path, manifest: Manifest, external: Mapping[str, list[str]]):
        self.path = Path(path)
        self.manifest = manifest
        self._external = dict(external)

    def __repr__(self) -> str:
        m = self.manifest
        return f"Bundle({m.name!r} {m.version}, task={m.task!r}, models={sorted(m.models)}, path='{self.path}')"

    def model_path(self, role: str = "model") -> Path:
        """Path of the ONNX file for ``role``."""
        return self.path / self.manifest.model(role).file

    def file_path(self, rel: str) -> Path:
        """Path of a listed file (tokenizer, labels...); ValueError if the manifest does not list it."""
        if rel not in self.manifest.files:
            raise ValueError(f"file {rel!r} is not listed in bundle {self.manifest.name!r}; "
                             f"listed: {sorted(self.manifest.files)}")
        return self.path / rel

    def has_external_data(self, role: str = "model") -> bool:
        return bool(self._external.get(self.manifest.model(role).file))

    def engine(self, role: str = "model", options: Any = None):
        """An :class:`sdk.runtime.Engine` on the verified model for ``role``.

        Without external data the file is read once, its SHA-256 checked again, and those
        bytes go to onnxruntime. With external data onnxruntime needs the path (its data
        files were checked by :func:`load_bundle`).
        """
        from sdk.runtime import Engine

        entry = self.manifest.model(role)
        if self.has_external_data(role):
            return Engine(self.model_path(role), options)
        data = self.model_path(role).read_bytes()
        got, expected = bytes_sha256(data), self.manifest.files[entry.file]
        if got != expected:
            raise IntegrityError(f"file {entry.file!r} in bundle {self.path} changed after it was verified: "
                                 f"expected SHA-256 {expected}, got {got}")
        return Engine(data, options, label=str(self.model_path(role)))

    def preprocessor(self):
        """The :class:`sdk.preprocess.Preprocessor` built from the manifest's ``preprocess``."""
        if self.manifest.preprocess is None:
            raise BundleError(f"bundle {self.manifest.name!r} at {self.path} declares no preprocessing "
                              "(manifest 'preprocess' is null)")
        return self.manifest.preprocess.build()


# --- loading -------------------------------------------------------------------------
def load_bundle(path: str | os.PathLike, *, trusted_keys=None) -> Bundle:
    """Load and verify a bundle folder or a ``.ewb`` archive.

    An archive is unpacked (path-checked) once into ``$EDGEWISE_HOME/unpacked/<sha256>``.
    ``trusted_keys``: public-key paths; when given, or when a process-wide or
    ``EDGEWISE_TRUSTED_KEYS`` policy is set (:mod:`sdk.bundle.signing`), the signature is
    checked first, before the manifest is parsed. Raises BundleError / IntegrityError /
    UnsafePathError / SignatureError naming the file and the reason.
    """
    p = Path(path)
    if p.is_dir():
        return _verified(p, trusted_keys)
    if p.is_file():
        if p.suffix.lower() in (".onnx", ".ort"):
            raise BundleError(f"{p} is a bare model, not a bundle; load it with sdk.runtime.Engine, or wrap it "
                              "with sdk.bundle.save_bundle to pin its hash and metadata")
        return _load_archive(p, trusted_keys)
    raise FileNotFoundError(f"no bundle at {p} (expected a folder with {MANIFEST_NAME} or a .ewb archive)")


def _verified(root: Path, trusted_keys) -> Bundle:
    """Signature (when a trust policy is set) first, then the manifest and every hash."""
    signed = None
    if trusted_keys is not None or _policy_possible():
        from sdk.bundle.signing import bind_manifest, check_policy  # model-signing only with a policy

        signed = check_policy(root, trusted_keys)
    manifest, external = verify_bundle_dir(root)
    if signed is not None:
        bind_manifest(root, signed, manifest)
    return Bundle(root, manifest, external)


def _policy_possible() -> bool:
    import sys

    mod = sys.modules.get("sdk.bundle.signing")
    return bool(os.environ.get("EDGEWISE_TRUSTED_KEYS", "").strip()) or (
        mod is not None and mod._process_keys is not None)


def _load_archive(archive: Path, trusted_keys=None) -> Bundle:
    digest = file_sha256(archive)
    dest = edgewise_home() / "unpacked" / digest
    if dest.is_dir():
        try:
            return _verified(dest, trusted_keys)
        except BundleError as exc:
            logger.warning("cached copy of %s at %s failed verification (%s); unpacking again", archive, dest, exc)
            shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        unpack_bundle(archive, dest)
    except OSError:
        if not (dest / MANIFEST_NAME).is_file():  # not a concurrent unpack of the same archive
            raise
    return _verified(dest, trusted_keys)


# --- saving --------------------------------------------------------------------------
def _write_source(src: FileSource, dst: Path, rel: str) -> None:
    import onnx

    if isinstance(src, onnx.ModelProto):
        try:
            data = src.SerializeToString()
        except ValueError as exc:  # protobuf's 2 GiB limit
            raise ValueError(f"model {rel!r} is too large to serialise in one file ({exc}); save it with "
                             "onnx.save_model(..., save_as_external_data=True) and pass the files as paths") from exc
        dst.write_bytes(data)
    elif isinstance(src, (bytes, bytearray, memoryview)):
        dst.write_bytes(bytes(src))
    elif isinstance(src, (str, os.PathLike)):
        sp = Path(src)
        if not sp.is_file():
            raise FileNotFoundError(f"source for {rel!r} is not a file: {sp}")
        with open(sp, "rb") as fi, open(dst, "wb") as fo:
            shutil.copyfileobj(fi, fo, CHUNK)
    else:
        raise TypeError(f"file {rel!r}: expected a path, bytes or onnx.ModelProto, got {type(src).__name__}")


def _fill_signature(entry: ModelEntry, path: Path) -> ModelEntry:
    """Read inputs/outputs from the ONNX graph when the entry does not declare them."""
    if entry.inputs or entry.outputs:
        return entry
    import onnx

    from sdk.runtime import TensorSpec

    proto = onnx.load(str(path), load_external_data=False)
    init = {t.name for t in proto.graph.initializer}
    inputs = [TensorSpec.from_value_info(v) for v in proto.graph.input if v.name not in init]
    outputs = [TensorSpec.from_value_info(v) for v in proto.graph.output]
    return entry.model_copy(update={"inputs": inputs, "outputs": outputs})


def save_bundle(out_dir: str | os.PathLike, manifest: Manifest, files: Mapping[str, FileSource],
                *, overwrite: bool = False) -> Bundle:
    """Write a bundle folder: the files, their SHA-256 in ``manifest.json``; returns the Bundle.

    ``files`` maps bundle-relative paths to a source path, bytes or an ``onnx.ModelProto``.
    Model entries without inputs/outputs get them from the ONNX graph. The folder is built
    next to ``out_dir`` and renamed into place, so a crash never leaves half a bundle. An
    existing non-empty ``out_dir`` is replaced only with ``overwrite=True``.
    """
    out = Path(out_dir)
    if not files:
        raise ValueError("save_bundle needs at least one file")
    for rel in files:
        check_relpath(rel, "file")
        if rel == MANIFEST_NAME:
            raise ValueError(f"{MANIFEST_NAME!r} is written by save_bundle; do not pass it in 'files'")
    missing = sorted({e.file for e in manifest.models.values()} - set(files))
    if missing:
        raise ValueError(f"model file(s) {missing} named in manifest.models are not in 'files' ({sorted(files)})")
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise FileExistsError(f"{out} exists and is not a folder")
        if any(out.iterdir()) and not overwrite:
            raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    tmp = out.parent / f".{out.name}.tmp-{token}"
    tmp.mkdir()
    try:
        for rel, src in sorted(files.items()):
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            _write_source(src, dst, rel)
        hashes = {rel: file_sha256(tmp / rel) for rel in sorted(files)}
        models = {role: _fill_signature(e, tmp / e.file) for role, e in manifest.models.items()}
        prov = manifest.provenance
        if not prov.created_by:
            prov = prov.model_copy(update={"created_by": f"edgewise {sdk_version()}"})
        data = manifest.model_copy(update={"models": models, "provenance": prov, "files": hashes})
        final = Manifest.model_validate(data.model_dump(mode="json"))  # exactly what load_bundle will see
        (tmp / MANIFEST_NAME).write_text(final.to_json(), encoding="utf-8")
        checked, external = verify_bundle_dir(tmp)
        _swap_into_place(tmp, out, token)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved bundle %r %s to %s (%d files)", final.name, final.version, out, len(hashes))
    return Bundle(out, checked, external)


def _swap_into_place(tmp: Path, out: Path, token: str) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{token}"
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
