"""The per-device audit key and the keyed checkpoint of an audit log.

The key (32 random bytes, hex) lives in ``$EDGEWISE_AUDIT_KEY`` or, by default,
``$EDGEWISE_HOME/keys/audit.key`` (``~/.cache/edgewise/keys/audit.key``), away from any
output folder; it is created on first use with mode 0600 in a 0700 folder. Whoever can
read it can forge audit records: keep it on the device, and out of backups of the outputs.

The checkpoint records how many records the log held and the hash of the last one, under
an HMAC-SHA256 with that key, as a transparency log keeps a signed tree head. It is kept
twice, apart from the log: ``<log>.checkpoint`` (travels with the output folder) and the
device's copy beside the key (``audit-checkpoints/``), so restoring an older checkpoint in
the output folder does not hide a cut tail on the device that wrote it. Cutting the tail of the log, or rewriting it
and its hash chain, no longer matches a checkpoint that only the key holder can write.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path

KEY_ENV = "EDGEWISE_AUDIT_KEY"


def default_key_path() -> Path:
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV])
    home = os.environ.get("EDGEWISE_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "edgewise")
    return Path(home) / "keys" / "audit.key"


def load_key(path: str | Path | None = None, create: bool = True) -> bytes:
    """The device's audit key; created (0600) on first use when ``create``.

    Raises FileNotFoundError when it is absent and ``create`` is false, ValueError when
    the file is not a regular file holding a 64-hex-digit key.
    """
    p = Path(path) if path else default_key_path()
    if not p.exists():
        if not create:
            raise FileNotFoundError(f"no audit key at {p}: this device never wrote an audit log "
                                    f"(set {KEY_ENV} to the key of the device that did)")
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_secret_once(p, 32)
    st = os.stat(p)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"audit key {p} is not a regular file")
    text = p.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError(f"audit key {p} is damaged: expected 64 hex digits, found {len(text)} characters")
    return key


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"edgewise-audit-key-id" + key).hexdigest()[:16]


def record_mac(key: bytes, record_hash: str) -> str:
    """MAC of one record (over its hash, which covers every other field)."""
    return hmac.new(key, b"record:" + record_hash.encode(), hashlib.sha256).hexdigest()


def _checkpoint_body(log_name: str, count: int, head: str, kid: str) -> bytes:
    return json.dumps({"log": log_name, "count": count, "head": head, "key_id": kid},
                      sort_keys=True, separators=(",", ":")).encode()


def checkpoint_path(log: Path) -> Path:
    """The checkpoint that travels with the log (next to it, in the output folder)."""
    return log.with_name(log.name + ".checkpoint")


def device_checkpoint_path(log: Path) -> Path:
    """The device's own copy, beside the key and away from the output folder (named by the
    log's absolute path): someone who can rewrite the output folder cannot roll it back to
    an older checkpoint to hide a cut tail."""
    digest = hashlib.sha256(str(Path(log).resolve()).encode()).hexdigest()[:32]
    return default_key_path().parent / "audit-checkpoints" / f"{digest}.json"


def _mac(key: bytes, log_name: str, count: int, head: str, kid: str) -> str:
    return hmac.new(key, b"checkpoint:" + _checkpoint_body(log_name, count, head, kid), hashlib.sha256).hexdigest()


def _atomic_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_checkpoint(log: Path, key: bytes, count: int, head: str) -> None:
    """Atomically replace both checkpoints (next to the log, and the device's copy)."""
    kid = key_id(key)
    data = {"log": log.name, "count": count, "head": head, "key_id": kid,
            "mac": _mac(key, log.name, count, head, kid)}
    _atomic_json(checkpoint_path(log), data)
    _atomic_json(device_checkpoint_path(log), data)


def _read_one(cp: Path, key: bytes) -> tuple[int, str]:
    raw = cp.read_bytes()
    try:
        d = json.loads(raw.decode("utf-8"))
        count, head, kid, mac = int(d["count"]), str(d["head"]), str(d["key_id"]), str(d["mac"])
        log_name = str(d["log"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ValueError(f"checkpoint {cp} is unreadable ({type(exc).__name__}: {exc})") from None
    if kid != key_id(key):
        raise ValueError(f"checkpoint {cp} was made with another key (key id {kid}, this device's is "
                         f"{key_id(key)}); set {KEY_ENV} to that device's key")
    if not hmac.compare_digest(_mac(key, log_name, count, head, kid), mac):
        raise ValueError(f"checkpoint {cp} does not verify with the device key (forged or edited)")
    return count, head


def read_checkpoint(log: Path, key: bytes) -> tuple[int, str]:
    """(count, head hash) of the most advanced checkpoint whose MAC verifies (the one next
    to the log and the device's copy); ValueError naming what is wrong, FileNotFoundError
    when there is none."""
    found = []
    for cp in (checkpoint_path(log), device_checkpoint_path(log)):
        if cp.is_file():
            found.append(_read_one(cp, key))
    if not found:
        raise FileNotFoundError(f"no checkpoint {checkpoint_path(log).name} next to the log (nor this device's "
                                "copy): it cannot be proven that the log was not cut or rewritten")
    return max(found)


def write_secret_once(path: Path, nbytes: int) -> None:
    """Create ``path`` (0600) holding ``nbytes`` random bytes as hex, unless it exists: written to
    a private temporary file, then hard-linked into place, so two processes creating it at once
    agree on one secret."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_hex(nbytes).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
