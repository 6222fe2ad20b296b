"""``.ewb`` archives: a bundle folder as one zip file, packed deterministically.

Unpacking trusts nothing in the archive: member names must be safe relative paths,
symlinks and special files are refused, the total size is capped, and every member is
counted while it is extracted so a header that under-declares its size (a zip bomb)
stops the extraction. ``manifest.json`` is read first: every other member must be one of
the files it lists, each is hashed while it is written and compared with the hash the
manifest declares, and a member whose declared size is more than ``max_ratio`` times its
compressed size (a zip bomb's signature; real model weights compress about 1.1:1) is
refused before a byte is written. Whatever was written is removed when an archive is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
import zipfile
import zlib
from pathlib import Path

from sdk.bundle.hashing import CHUNK
from sdk.bundle.manifest import MANIFEST_NAME
from sdk.bundle.paths import relpath_problem
from sdk.bundle.signing import MAX_SIGNATURE_BYTES, SIGNATURE_NAME
from sdk.bundle.verify import verify_bundle_dir
from sdk.errors import BundleError, UnsafePathError

ARCHIVE_SUFFIX = ".ewb"
MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 16 << 30  # 16 GiB unpacked
MAX_RATIO = 200             # declared size / compressed size, for members above RATIO_FLOOR
RATIO_FLOOR = 1 << 20
MAX_MANIFEST_BYTES = 16 << 20
_EPOCH = (1980, 1, 1, 0, 0, 0)


def pack_bundle(bundle_dir: str | os.PathLike, archive_path: str | os.PathLike) -> Path:
    """Verify the bundle folder, then zip ``manifest.json`` and every listed file into one archive.

    The archive is deterministic (sorted members, fixed timestamps and modes), so packing
    the same bundle twice gives the same bytes. Unlisted files are left out. A signature
    (``bundle.sig``) travels along unchecked: whoever loads the archive checks it.
    """
    src = Path(bundle_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"no bundle folder at {src}")
    manifest, _ = verify_bundle_dir(src)
    dst = Path(archive_path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{secrets.token_hex(4)}")
    names = [MANIFEST_NAME] + sorted(manifest.files)
    if (src / "bundle.sig").is_file():  # the signature travels with the bundle (sdk.bundle.signing)
        names.append("bundle.sig")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for rel in names:
                info = zipfile.ZipInfo(rel, date_time=_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.create_system = 3  # unix, so external_attr is read as a mode everywhere
                with open(src / rel, "rb") as fi, zf.open(info, "w", force_zip64=True) as fo:
                    shutil.copyfileobj(fi, fo, CHUNK)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dst


def _check_member(info: zipfile.ZipInfo, archive: Path) -> None:
    name = info.filename
    where = f"archive {archive.name}: member {name!r}"
    if not name:
        raise UnsafePathError(f"archive {archive.name} holds a member with an empty name")
    ftype = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
    if ftype == stat.S_IFLNK:
        raise UnsafePathError(f"{where} is a symlink; archives may hold regular files only")
    if ftype not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no type recorded, a plain file
        raise UnsafePathError(f"{where} is not a regular file (mode {oct(info.external_attr >> 16)})")
    rel = name[:-1] if info.is_dir() else name
    problem = relpath_problem(rel)
    if problem:
        raise UnsafePathError(f"{where} refused because {problem}")


def _declared_files(zf: zipfile.ZipFile, src: Path) -> dict[str, str] | None:
    """``files`` (relpath -> SHA-256) of the archive's manifest.json, read with a size cap."""
    info = zf.getinfo(MANIFEST_NAME)
    if info.file_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"archive {src.name}: {MANIFEST_NAME} declares {info.file_size} bytes; "
                          f"at most {MAX_MANIFEST_BYTES} are accepted")
    try:
        with zf.open(info) as fi:
            raw = fi.read(MAX_MANIFEST_BYTES + 1)
        data = json.loads(raw.decode("utf-8"))
    except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"archive {src.name}: {MANIFEST_NAME} is not readable JSON: {exc}") from exc
    files = data.get("files") if isinstance(data, dict) else None
    if files is None:  # not a saved manifest: load_bundle refuses it; only the size checks apply here
        return None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise BundleError(f"archive {src.name}: {MANIFEST_NAME} 'files' must map relpath -> sha256")
    return files


def unpack_bundle(archive: str | os.PathLike, dest: str | os.PathLike, *,
                  max_total_bytes: int = MAX_TOTAL_BYTES, max_ratio: float = MAX_RATIO) -> Path:
    """Extract a ``.ewb`` archive into ``dest`` (which must not exist or be empty); returns ``dest``.

    Path-checked and size-capped; the result is not yet hash-verified: call
    :func:`load_bundle` on it (``load_bundle`` on the archive does both).
    """
    src, out = Path(archive), Path(dest)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder")
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError, NotImplementedError, ValueError, EOFError) as exc:
        raise BundleError(f"{src} is not a readable bundle archive (zip): {exc}") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise BundleError(f"archive {src.name} has {len(infos)} members; at most {MAX_MEMBERS} are accepted")
        seen: set[str] = set()
        total = 0
        for info in infos:
            _check_member(info, src)
            key = info.filename.rstrip("/")
            if key in seen:
                raise BundleError(f"archive {src.name}: member {info.filename!r} appears twice")
            seen.add(key)
            total += info.file_size
        if total > max_total_bytes:
            raise BundleError(f"archive {src.name} declares {total} bytes unpacked; the limit is {max_total_bytes}")
        if MANIFEST_NAME not in seen:
            raise BundleError(f"archive {src.name} has no {MANIFEST_NAME}; it is not a bundle")
        declared = _declared_files(zf, src)
        for info in infos:
            if info.is_dir() or info.filename == MANIFEST_NAME:
                continue
            if info.filename == SIGNATURE_NAME:      # signs the manifest, so it cannot be listed in it
                if info.file_size > MAX_SIGNATURE_BYTES:
                    raise BundleError(f"archive {src.name}: {SIGNATURE_NAME} declares {info.file_size} bytes; a "
                                      f"signature is at most {MAX_SIGNATURE_BYTES}")
                continue
            if declared is not None and info.filename not in declared:
                raise BundleError(f"archive {src.name}: member {info.filename!r} is not listed in {MANIFEST_NAME}; "
                                  "refusing to unpack files the bundle does not declare")
            if info.file_size > RATIO_FLOOR and info.file_size > max_ratio * max(1, info.compress_size):
                raise BundleError(f"archive {src.name}: member {info.filename!r} declares {info.file_size} bytes from "
                                  f"{info.compress_size} compressed (more than {max_ratio:g}:1); "
                                  "refusing a likely zip bomb")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            for info in infos:
                target = tmp / info.filename.rstrip("/")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                _extract_one(zf, info, target, src, (declared or {}).get(info.filename))
            if out.exists():
                out.rmdir()
            os.rename(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def _extract_one(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, src: Path,
                 sha256: str | None = None) -> None:
    written = 0
    h = hashlib.sha256()
    try:
        fi = zf.open(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError,
            RuntimeError) as exc:  # OSError: a lying offset; NotImplementedError: a method; RuntimeError: encrypted
        raise BundleError(f"archive {src.name}: member {info.filename!r} is corrupt: {exc}") from exc
    try:
        with fi, open(target, "xb") as fo:
            while chunk := fi.read(CHUNK):
                written += len(chunk)
                if written > info.file_size:
                    raise BundleError(f"archive {src.name}: member {info.filename!r} unpacks to more than the "
                                      f"{info.file_size} bytes it declares; refusing (possible zip bomb)")
                h.update(chunk)
                fo.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise BundleError(f"archive {src.name}: member {info.filename!r} is corrupt: {exc}") from exc
    if written != info.file_size:
        raise BundleError(f"archive {src.name}: member {info.filename!r} unpacked to {written} bytes, "
                          f"expected {info.file_size}")
    if sha256 is not None and h.hexdigest() != sha256.lower():
        from sdk.errors import IntegrityError

        raise IntegrityError(f"archive {src.name}: member {info.filename!r} has SHA-256 {h.hexdigest()}, but the "
                             f"manifest declares {sha256}; refused and removed")

