"""A local copy of a model to install from: a folder, one file, or a zip (.ewb) / tar archive.

Only the files the catalog names are read, by name: nothing else in the source is
extracted, so an archive's other members (and their paths) never touch the disk. Archive
members must be regular files; folder entries must be regular files (a FIFO or a device
is refused, never read).
"""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from sdk.closing import Closing
from sdk.errors import StoreError


class LocalSource(Closing):
    def __init__(self, path: Path, single_file: bool = False):
        if not path.exists():
            raise FileNotFoundError(f"no local copy at {path} (expected a folder, a file or an archive)")
        self.path, self.single_file = path, single_file
        self._zip = self._tar = None
        self._members: dict[str, str] = {}
        if path.is_dir():
            self.kind = "folder"
        elif path.is_file() and single_file:  # the model file itself (an .ewb entry's archive included)
            self.kind = "file"
        elif path.is_file() and zipfile.is_zipfile(path):
            self.kind = "zip"
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise StoreError(f"{path} is not a readable zip archive: {exc}") from exc
            self._index([i.filename for i in self._zip.infolist() if not i.is_dir()])
        elif path.is_file() and _is_tar(path):
            self.kind = "tar"
            try:
                self._tar = tarfile.open(path)
                self._index([m.name for m in self._tar.getmembers() if m.isfile()])
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise StoreError(f"{path} is not a readable tar archive: {exc}") from exc
        else:
            raise StoreError(f"{path} is neither a folder nor a zip/.ewb/tar archive")

    def _index(self, names: list[str]) -> None:
        """Members by full name, and by name below a single top-level folder (``model/onnx/x``)."""
        for n in names:
            self._members.setdefault(n, n)
        tops = {PurePosixPath(n).parts[0] for n in names if len(PurePosixPath(n).parts) > 1}
        if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in names):
            for n in names:
                self._members.setdefault(str(PurePosixPath(*PurePosixPath(n).parts[1:])), n)
        for n in names:
            self._members.setdefault(PurePosixPath(n).name, n)

    def names(self) -> list[str]:
        if self.kind == "folder":
            return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file())
        if self.kind == "file":
            return [self.path.name]
        return sorted(set(self._members.values()))

    def find(self, relpath: str):
        if self.kind == "file":
            return self.path
        if self.kind == "folder":
            for cand in (self.path / relpath, self.path / PurePosixPath(relpath).name):
                if cand.is_file():
                    return cand
            return None
        return self._members.get(relpath) or self._members.get(PurePosixPath(relpath).name)

    def describe(self, relpath: str) -> str:
        where = self.find(relpath)
        return str(where) if self.kind in ("file", "folder") else f"{self.path}!{where}"

    def open(self, relpath: str):
        where = self.find(relpath)
        if where is None:
            raise StoreError(f"{self.path} has no {relpath!r}")
        if self.kind in ("file", "folder"):
            return open(where, "rb")
        if self._zip is not None:
            return self._zip.open(where)
        if self._tar is None:
            raise StoreError(f"{self.path} is closed")
        fo = self._tar.extractfile(where)
        if fo is None:
            raise StoreError(f"{self.path}: member {where!r} is not a regular file")
        return fo

    def close(self) -> None:
        for a in (self._zip, self._tar):
            if a is not None:
                a.close()


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False
