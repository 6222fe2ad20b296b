"""The store's lock file ``<cache>/lock.json``: the verified state of every cached file.

For each file it records the SHA-256, size and mtime seen when it was last verified, so
re-verifying on use costs a ``stat`` while the file is untouched. Hashes recorded under
trust-on-first-use (``tofu: true``) are the reference for every later check.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from sdk._log import logger

LOCK_SCHEMA = "edgewise.lock/1"


class LockFile:
    def __init__(self, path: Path):
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable lock file %s (%s); cached files will be re-hashed", self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get("schema_version") != LOCK_SCHEMA:
            logger.warning("ignoring lock file %s with an unknown format", self.path)
            return {}
        models = data.get("models")
        return models if isinstance(models, dict) else {}

    def get(self, name: str, rel: str) -> dict[str, Any] | None:
        rec = self._read().get(name, {}).get(rel)
        return rec if isinstance(rec, dict) else None

    def put(self, name: str, rel: str, **record: Any) -> None:
        models = self._read()
        models.setdefault(name, {})[rel] = record
        self._write(models)

    def drop(self, name: str, rel: str) -> None:
        models = self._read()
        if rel in models.get(name, {}):
            del models[name][rel]
            self._write(models)

    def _write(self, models: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        tmp.write_text(json.dumps({"schema_version": LOCK_SCHEMA, "models": models}, indent=2, sort_keys=True) + "\n",
                       encoding="utf-8")
        os.replace(tmp, self.path)
