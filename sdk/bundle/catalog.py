"""The model catalog: named models with source URLs and pinned SHA-256.

Catalogs are JSON files ``{"schema_version": "edgewise.catalog/1", "models": [...]}``.
The built-in one (``sdk/bundle/catalog.json``) is merged with ``<cache>/catalog.json`` and
any catalog the caller passes; a later catalog overrides an earlier entry of the same name.
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Literal, Mapping
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sdk._log import logger
from sdk.bundle.hashing import check_sha256
from sdk.bundle.paths import check_relpath
from sdk.errors import StoreError

CATALOG_SCHEMA = "edgewise.catalog/1"
BUILTIN_CATALOG = Path(__file__).with_name("catalog.json")
_URL_SCHEMES = ("http", "https", "file")
_DEFAULT_NAMES = {"onnx": "model.onnx", "bundle-archive": "bundle.ewb", "file": "file"}


def _check_url(url: str) -> str:
    scheme = urlparse(url).scheme
    if scheme not in _URL_SCHEMES:
        raise ValueError(f"url must use one of {list(_URL_SCHEMES)}, but got {url!r}")
    return url


def _sha_or_none(v: str | None) -> str | None:
    return None if v is None else check_sha256(v)


class CatalogFile(BaseModel):
    """One file of a multi-file catalog entry, stored at ``relpath`` in the model's folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    relpath: str
    url: str
    sha256: str | None = Field(None, description="pinned SHA-256; null needs trust-on-first-use")
    size: int | None = Field(None, ge=0)

    @field_validator("relpath")
    @classmethod
    def _relpath(cls, v: str) -> str:
        return check_relpath(v, "relpath")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url(v)

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        return _sha_or_none(v)


class CatalogEntry(BaseModel):
    """A named model: one file (``url`` + ``sha256``) or several (``files``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    url: str | None = None
    sha256: str | None = Field(None, description="pinned SHA-256; null needs trust-on-first-use")
    size: int | None = Field(None, ge=0)
    kind: Literal["onnx", "bundle-archive", "file"] = "onnx"
    licence: str | None = None
    description: str = ""
    filename: str | None = Field(None, description="name in the cache (default: the URL's last component)")
    files: list[CatalogFile] | None = Field(None, description="for multi-file models (encoder + decoder + tokenizer)")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v)

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        return _sha_or_none(v)

    @field_validator("filename")
    @classmethod
    def _filename(cls, v: str | None) -> str | None:
        if v is not None and "/" in check_relpath(v, "filename"):
            raise ValueError(f"filename must be a plain file name, but got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> "CatalogEntry":
        if self.files is None:
            if not self.url:
                raise ValueError(f"catalog entry {self.name!r} needs a 'url' (or a list of 'files')")
        else:
            if self.url or self.sha256 or self.size is not None or self.filename:
                raise ValueError(f"catalog entry {self.name!r} has 'files'; 'url', 'sha256', 'size' and "
                                 "'filename' belong to each file then")
            if not self.files:
                raise ValueError(f"catalog entry {self.name!r} has an empty 'files' list")
            rels = [f.relpath for f in self.files]
            if len(set(rels)) != len(rels):
                raise ValueError(f"catalog entry {self.name!r} lists a relpath twice: {rels}")
        return self

    @property
    def multi_file(self) -> bool:
        return self.files is not None

    def file_list(self) -> list[CatalogFile]:
        """The files to fetch; a single-file entry gives one, named :meth:`cache_filename`."""
        if self.files is not None:
            return list(self.files)
        return [CatalogFile(relpath=self.cache_filename(), url=self.url, sha256=self.sha256, size=self.size)]

    def cache_filename(self) -> str:
        if self.filename:
            return self.filename
        base = unquote(PurePosixPath(urlparse(self.url or "").path).name)
        ok = base and all(c.isalnum() or c in "._-" for c in base) and base not in (".", "..")
        return base if ok else _DEFAULT_NAMES[self.kind]

    @property
    def pinned(self) -> bool:
        return all(f.sha256 for f in self.file_list())

    @property
    def total_size(self) -> int | None:
        sizes = [f.size for f in self.file_list()]
        known = [s for s in sizes if s is not None]
        return sum(known) if len(known) == len(sizes) else None


def parse_catalog(data: Any, source: str) -> dict[str, CatalogEntry]:
    """Entries from a parsed catalog (``{"models": [...]}`` or a bare list); StoreError if invalid."""
    if isinstance(data, Mapping):
        schema = data.get("schema_version", CATALOG_SCHEMA)
        if schema != CATALOG_SCHEMA:
            raise StoreError(f"catalog {source}: schema_version must be {CATALOG_SCHEMA!r}, but got {schema!r}")
        unknown = set(data) - {"schema_version", "models"}
        if unknown:
            raise StoreError(f"catalog {source}: unknown top-level keys {sorted(unknown)} (expected 'models')")
        data = data.get("models", [])
    if not isinstance(data, list):
        raise StoreError(f"catalog {source}: expected a list of models, got {type(data).__name__}")
    out: dict[str, CatalogEntry] = {}
    for i, item in enumerate(data):
        try:
            entry = item if isinstance(item, CatalogEntry) else CatalogEntry.model_validate(item)
        except ValidationError as exc:
            raise StoreError(f"catalog {source}: entry {i} is invalid: {exc}") from exc
        if entry.name in out:
            raise StoreError(f"catalog {source}: model {entry.name!r} is listed twice")
        out[entry.name] = entry
    return out


def read_catalog(path: str | os.PathLike) -> dict[str, CatalogEntry]:
    """Entries of a catalog JSON file; StoreError naming the file if it is unreadable or invalid."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"catalog file not found: {p}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"catalog {p} is not readable JSON: {exc}") from exc
    except RecursionError:
        raise StoreError(f"catalog {p} nests JSON deeper than Python can parse") from None
    return parse_catalog(data, str(p))


def merge_catalogs(parts: Iterable[tuple[str, dict[str, CatalogEntry]]]) -> dict[str, CatalogEntry]:
    merged: dict[str, CatalogEntry] = {}
    for source, entries in parts:
        for name, entry in entries.items():
            if name in merged:
                logger.debug("catalog %s overrides model %r", source, name)
            merged[name] = entry
    return merged
