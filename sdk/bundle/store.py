"""ModelStore: a local cache of named models, filled by verified, resumable downloads.

Layout of the cache (``$EDGEWISE_HOME`` or ``~/.cache/edgewise``)::

    catalog.json              optional user catalog, merged over the built-in one
    lock.json                 verified hashes (+ size/mtime) of cached files
    models/<name>/<file>      a single-file model (kind "onnx", "bundle-archive", "file")
    models/<name>/<relpath>   each file of a multi-file model (encoder, decoder, tokenizer...)
    unpacked/<sha256>/        bundle archives unpacked by load_bundle
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from sdk._log import logger
from sdk.bundle.catalog import BUILTIN_CATALOG, CatalogEntry, CatalogFile, merge_catalogs, parse_catalog, read_catalog
from sdk.bundle.download import download, part_path
from sdk.bundle.hashing import file_sha256
from sdk.bundle.home import edgewise_home, offline_from_env, sdk_version
from sdk.bundle.lock import LockFile
from sdk.errors import IntegrityError, OfflineError, StoreError

CatalogSource = str | os.PathLike | Mapping[str, Any] | Iterable[Any]


class ModelStore:
    """Named models from a catalog, cached locally and verified on every use.

    ``cache_dir`` defaults to ``$EDGEWISE_HOME`` or ``~/.cache/edgewise``; ``offline``
    defaults to ``EDGEWISE_OFFLINE=1``. ``catalog`` (a JSON path, a ``{"models": [...]}``
    mapping or a list of entries) is merged over the built-in catalog and
    ``<cache_dir>/catalog.json``.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None, catalog: CatalogSource | None = None,
                 offline: bool | None = None, *, retries: int = 2, timeout: float = 30.0):
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else edgewise_home()
        self.offline = offline_from_env() if offline is None else bool(offline)
        self.retries = retries
        self.timeout = timeout
        self._user_agent = f"edgewise/{sdk_version()}"
        self._lock = LockFile(self.cache_dir / "lock.json")
        parts = [("built-in", read_catalog(BUILTIN_CATALOG))]
        user = self.cache_dir / "catalog.json"
        if user.is_file():
            parts.append((str(user), read_catalog(user)))
        if catalog is not None:
            if isinstance(catalog, (str, os.PathLike)):
                parts.append((str(catalog), read_catalog(catalog)))
            else:
                data = catalog if isinstance(catalog, Mapping) else list(catalog)
                parts.append(("argument", parse_catalog(data, "argument")))
        self.catalog: dict[str, CatalogEntry] = merge_catalogs(parts)

    def __repr__(self) -> str:
        return f"ModelStore(cache_dir='{self.cache_dir}', models={len(self.catalog)}, offline={self.offline})"

    # --- lookup ------------------------------------------------------------------------
    def entry(self, name: str) -> CatalogEntry:
        """The catalog entry for ``name``; StoreError with close matches if unknown."""
        try:
            return self.catalog[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.catalog), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise StoreError(f"no model {name!r} in the catalog{hint} Known: {sorted(self.catalog)}") from None

    def target(self, name: str) -> Path:
        """Where ``name`` lives in the cache: the file, or the folder of a multi-file model."""
        entry = self.entry(name)
        folder = self.cache_dir / "models" / entry.name
        return folder if entry.multi_file else folder / entry.cache_filename()

    def _file_path(self, entry: CatalogEntry, cf: CatalogFile) -> Path:
        return self.cache_dir / "models" / entry.name / cf.relpath

    def _expected(self, entry: CatalogEntry, cf: CatalogFile) -> str | None:
        if cf.sha256:
            return cf.sha256
        rec = self._lock.get(entry.name, cf.relpath)
        return rec.get("sha256") if rec and rec.get("tofu") else None

    def _unpinned_error(self, entry: CatalogEntry, cf: CatalogFile) -> StoreError:
        return StoreError(
            f"model {entry.name!r}: file {cf.relpath!r} has no pinned SHA-256 in the catalog, so its download "
            f"cannot be verified. Pin it in a catalog (--catalog FILE), or pass --trust-on-first-use "
            f"(Python: trust_on_first_use=True) to record the hash of the first download in {self._lock.path} "
            "and check every later use against it")

    def _offline_error(self, entry: CatalogEntry, missing: list[Path]) -> OfflineError:
        where = self.target(entry.name)
        what = "the file" if not entry.multi_file else f"the files ({', '.join(p.name for p in missing)})"
        return OfflineError(
            f"model {entry.name!r} is not in the cache at {where} and offline mode is on (EDGEWISE_OFFLINE=1); "
            f"run `edgewise pull {entry.name}` on a connected machine or copy {what} to {where}")

    # --- verification ------------------------------------------------------------------
    def _verify(self, entry: CatalogEntry, cf: CatalogFile, path: Path, expected: str) -> None:
        """Hash a cached file and compare it with ``expected``, on every use.

        Size and mtime are never taken as proof: both are copied or reset with one
        ``touch``. The cost is one streamed SHA-256 (about 0.1 s for 40 MB here).
        """
        if not path.is_file():
            raise IntegrityError(f"cached file {path} of model {entry.name!r} is not a regular file; "
                                 f"run `edgewise pull {entry.name} --force`")
        got = file_sha256(path)
        if got != expected:
            raise IntegrityError(f"cached file {path} of model {entry.name!r} failed its SHA-256 check: expected "
                                 f"{expected}, got {got}; run `edgewise pull {entry.name} --force` "
                                 "to download it again")
        rec = self._lock.get(entry.name, cf.relpath)
        if not rec or rec.get("sha256") != got:
            self._record(entry, cf, path, got, tofu=not cf.sha256)

    def _record(self, entry: CatalogEntry, cf: CatalogFile, path: Path, sha: str, *, tofu: bool) -> None:
        st = path.stat()
        self._lock.put(entry.name, cf.relpath, sha256=sha, size=st.st_size, mtime_ns=st.st_mtime_ns,
                       url=cf.url, tofu=tofu)

    # --- public API --------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """The cached, verified path of ``name`` (file, or folder for a multi-file model).

        OfflineError when missing in offline mode, StoreError when missing otherwise,
        IntegrityError when a cached file no longer matches its hash.
        """
        entry = self.entry(name)
        missing = []
        for cf in entry.file_list():
            p = self._file_path(entry, cf)
            if not p.is_file():
                missing.append(p)
                continue
            expected = self._expected(entry, cf)
            if expected is None:
                raise self._unpinned_error(entry, cf)
            self._verify(entry, cf, p, expected)
        if missing:
            if self.offline:
                raise self._offline_error(entry, missing)
            raise StoreError(f"model {name!r} is not in the cache at {self.target(name)}; "
                             f"run `edgewise pull {name}` (or ModelStore.pull({name!r})) first")
        return self.target(name)

    def pull(self, name: str, progress: bool = True, force: bool = False,
             trust_on_first_use: bool = False) -> Path:
        """Make sure ``name`` is cached and verified; download what is missing. Returns :meth:`path`.

        Downloads resume from ``.part`` files, are checked against the pinned SHA-256 (or,
        with ``trust_on_first_use``, the hash recorded by the first download) and are renamed
        into place atomically. ``force`` downloads again even when the cache is valid.
        """
        entry = self.entry(name)
        files = entry.file_list()
        for cf in files:
            if self._expected(entry, cf) is None and not trust_on_first_use:
                raise self._unpinned_error(entry, cf)
        todo: list[CatalogFile] = []
        for cf in files:
            p, expected = self._file_path(entry, cf), self._expected(entry, cf)
            if force or not p.is_file():
                todo.append(cf)
            elif expected is None:  # trust on first use of a file already in place
                sha = file_sha256(p)
                logger.warning("model %r: recording SHA-256 %s of %s (trust on first use)", name, sha, p)
                self._record(entry, cf, p, sha, tofu=True)
            else:
                try:
                    self._verify(entry, cf, p, expected)
                except IntegrityError as exc:
                    if self.offline:
                        raise
                    logger.warning("%s; downloading it again", exc)
                    todo.append(cf)
        if todo and self.offline:
            raise self._offline_error(entry, [self._file_path(entry, cf) for cf in todo])
        for cf in todo:
            p, expected = self._file_path(entry, cf), self._expected(entry, cf)
            logger.info("downloading %s -> %s", cf.url, p)
            sha = download(cf.url, p, expected_sha256=expected, expected_size=cf.size, progress=progress,
                           retries=self.retries, timeout=self.timeout, user_agent=self._user_agent)
            if expected is None:
                logger.warning("model %r: recorded SHA-256 %s of %s (trust on first use)", name, sha, cf.url)
            self._record(entry, cf, p, sha, tofu=not cf.sha256)
        return self.target(name)

    def import_from(self, name: str, source: str | os.PathLike, *, trust_on_first_use: bool = False,
                    force: bool = False) -> Path:
        """Install ``name`` from a local copy (a folder, a file, or a zip/.ewb/tar archive); no network.

        Each catalog file is looked up at its ``relpath`` in the source (or by its base
        name, for flat exports), streamed into the cache through a ``.part`` file capped at
        the declared size, checked against the pinned SHA-256 (or, with
        ``trust_on_first_use``, recorded as the reference), and renamed into place, exactly
        as a download is. A file already cached and valid is kept unless ``force``.
        """
        from sdk.bundle.download import copy_verified
        from sdk.bundle.local_source import LocalSource

        entry = self.entry(name)
        files = entry.file_list()
        for cf in files:
            if self._expected(entry, cf) is None and not trust_on_first_use:
                raise self._unpinned_error(entry, cf)
        with LocalSource(Path(source), single_file=not entry.multi_file) as src:
            missing = [cf.relpath for cf in files if src.find(cf.relpath) is None]
            if missing:
                raise StoreError(f"{source} does not hold every file of model {name!r}: missing {missing}; "
                                 f"it has {src.names()[:20]}")
            for cf in files:
                p, expected = self._file_path(entry, cf), self._expected(entry, cf)
                if not force and p.is_file() and expected is not None:
                    try:
                        self._verify(entry, cf, p, expected)
                        continue
                    except IntegrityError as exc:
                        logger.warning("%s; installing it again from %s", exc, source)
                with src.open(cf.relpath) as fi:
                    sha = copy_verified(fi, p, expected_sha256=expected, expected_size=cf.size,
                                        what=f"{src.describe(cf.relpath)} (model {name!r}, file {cf.relpath!r})")
                if expected is None:
                    logger.warning("model %r: recorded SHA-256 %s of %s (trust on first use)", name, sha, cf.relpath)
                self._record(entry, cf, p, sha, tofu=not cf.sha256)
        return self.target(name)

    def hashes(self, name: str) -> dict[str, str | None]:
        """``{relpath: SHA-256}`` each file is checked against (pinned, or recorded on first use; None if neither)."""
        entry = self.entry(name)
        return {cf.relpath: self._expected(entry, cf) for cf in entry.file_list()}

    def status(self, name: str) -> str:
        """"cached", "missing", "partial" (a resumable .part), "corrupt" or "unverified" (no hash)."""
        entry = self.entry(name)
        states = []
        for cf in entry.file_list():
            p = self._file_path(entry, cf)
            if not p.is_file():
                states.append("partial" if part_path(p).exists() else "missing")
                continue
            expected = self._expected(entry, cf)
            if expected is None:
                states.append("unverified")
                continue
            try:
                self._verify(entry, cf, p, expected)
                states.append("cached")
            except IntegrityError:
                states.append("corrupt")
        for s in ("corrupt", "unverified", "partial", "missing"):
            if s in states:
                return s
        return "cached"

    def list(self) -> list[dict[str, Any]]:
        """One JSON-ready record per catalog model: name, kind, licence, size, pinned, status, cached, path."""
        out = []
        for name in sorted(self.catalog):
            e = self.catalog[name]
            st = self.status(name)
            out.append({"name": name, "kind": e.kind, "licence": e.licence, "description": e.description,
                        "size": e.total_size, "files": len(e.file_list()), "pinned": e.pinned,
                        "status": st, "cached": st == "cached", "path": str(self.target(name))})
        return out
