"""ModelStore and downloads, against a local HTTP server on 127.0.0.1 (never the internet)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sdk.bundle import CatalogEntry, ModelStore
from sdk.errors import IntegrityError, OfflineError, StoreError

BODY = os.urandom(300_000)
OTHER = os.urandom(5_000)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        srv = self.server
        rng = self.headers.get("Range")
        body = srv.files.get(self.path)
        srv.requests.append({"path": self.path, "range": rng})
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and not srv.ignore_range:
            start = int(m.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        srv.statuses.append(206 if start else 200)
        if srv.cuts > 0:  # send part of the body, then drop the connection
            srv.cuts -= 1
            self.wfile.write(payload[: srv.cut_at])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.files = {"/m.onnx": BODY, "/other.bin": OTHER, "/tok.json": b'{"vocab": 1}'}
    srv.requests, srv.statuses = [], []
    srv.cuts, srv.cut_at, srv.ignore_range = 0, 100_000, False
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def entry(server, name="tiny", path="/m.onnx", body=BODY, **kw) -> dict:
    return {"name": name, "url": server.url + path, "sha256": sha(body), "size": len(body),
            "licence": "MIT", **kw}


def make_store(tmp_path, *entries, **kw) -> ModelStore:
    return ModelStore(cache_dir=tmp_path / "cache", catalog={"models": list(entries)}, **kw)


def test_pull_happy_path_then_cached(server, tmp_path):
    store = make_store(tmp_path, entry(server), offline=False)
    p = store.pull("tiny", progress=False)
    assert p == tmp_path / "cache" / "models" / "tiny" / "m.onnx"
    assert p.read_bytes() == BODY and not Path(str(p) + ".part").exists()
    lock = json.loads((tmp_path / "cache" / "lock.json").read_text())
    assert lock["models"]["tiny"]["m.onnx"]["sha256"] == sha(BODY)
    n = len(server.requests)
    assert store.pull("tiny", progress=False) == p and len(server.requests) == n  # no network when cached
    assert store.path("tiny") == p
    assert store.status("tiny") == "cached"
    store.pull("tiny", progress=False, force=True)
    assert len(server.requests) == n + 1


def test_resume_after_a_cut_on_the_next_pull(server, tmp_path):
    server.cuts = 1
    store = make_store(tmp_path, entry(server), offline=False, retries=0)
    with pytest.raises(StoreError, match="interrupted.*run the pull again to resume"):
        store.pull("tiny", progress=False)
    part = tmp_path / "cache" / "models" / "tiny" / "m.onnx.part"
    assert part.stat().st_size == server.cut_at
    assert store.status("tiny") == "partial"
    p = store.pull("tiny", progress=False)
    assert p.read_bytes() == BODY and not part.exists()
    assert server.requests[-1]["range"] == f"bytes={server.cut_at}-" and server.statuses[-1] == 206


def test_resume_within_one_pull(server, tmp_path):
    server.cuts = 2
    store = make_store(tmp_path, entry(server), offline=False, retries=2)
    assert store.pull("tiny", progress=False).read_bytes() == BODY
    assert [r["range"] for r in server.requests] == [None, "bytes=100000-", "bytes=200000-"]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.cuts, server.ignore_range = 1, True
    store = make_store(tmp_path, entry(server), offline=False, retries=1)
    assert store.pull("tiny", progress=False).read_bytes() == BODY
    assert server.requests[-1]["range"] == "bytes=100000-" and server.statuses[-1] == 200


def test_complete_part_answered_416_is_verified(server, tmp_path):
    d = tmp_path / "cache" / "models" / "tiny"
    d.mkdir(parents=True)
    (d / "m.onnx.part").write_bytes(BODY)
    store = make_store(tmp_path, entry(server), offline=False)
    assert store.pull("tiny", progress=False).read_bytes() == BODY


@pytest.mark.parametrize("bad", ["hash", "size"])  # the server sends 300000 bytes either way
def test_wrong_bytes_raise_integrity_error_and_remove_part(server, tmp_path, bad):
    e = entry(server)
    if bad == "hash":
        e["sha256"] = sha(b"something else")
    else:
        e["size"] = len(BODY) - 1
    store = make_store(tmp_path, e, offline=False)
    with pytest.raises(IntegrityError, match=re.escape(server.url + "/m.onnx")) as info:
        store.pull("tiny", progress=False)
    if bad == "hash":
        assert ("expected " + e["sha256"]) in str(info.value)
    else:  # refused from the announced length, before the body is read
        assert "announces 300000 bytes but the catalog declares 299999" in str(info.value)
    d = tmp_path / "cache" / "models" / "tiny"
    assert not (d / "m.onnx").exists() and not (d / "m.onnx.part").exists()


def test_server_file_shorter_than_pinned_size(server, tmp_path):
    store = make_store(tmp_path, entry(server, size=len(BODY) + 10), offline=False)
    with pytest.raises(IntegrityError, match="expected 300010 bytes, got 300000"):
        store.pull("tiny", progress=False)
    assert len(server.requests) == 1  # not retried as if it were a cut


def test_http_404_is_a_store_error_with_url_and_status(server, tmp_path):
    store = make_store(tmp_path, entry(server, path="/missing.onnx"), offline=False)
    with pytest.raises(StoreError, match=r"/missing\.onnx failed: HTTP 404"):
        store.pull("tiny", progress=False)


def test_connection_refused_is_a_store_error(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    e = {"name": "tiny", "url": f"http://127.0.0.1:{port}/m.onnx", "sha256": sha(BODY)}
    with pytest.raises(StoreError, match="could not connect"):
        make_store(tmp_path, e, offline=False).pull("tiny", progress=False)


def test_offline_missing_raises_offline_error(server, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEWISE_OFFLINE", "1")
    store = make_store(tmp_path, entry(server))
    assert store.offline
    for call in (store.path, lambda n: store.pull(n, progress=False)):
        with pytest.raises(OfflineError) as info:
            call("tiny")
        msg = str(info.value)
        assert "'tiny' is not in the cache at" in msg and "EDGEWISE_OFFLINE=1" in msg
        assert "edgewise pull tiny" in msg and "copy the file to" in msg
    assert server.requests == []


def test_offline_cached_returns_path_without_network(server, tmp_path):
    make_store(tmp_path, entry(server), offline=False).pull("tiny", progress=False)
    n = len(server.requests)
    offline = make_store(tmp_path, entry(server), offline=True)
    assert offline.path("tiny").read_bytes() == BODY
    assert offline.pull("tiny", progress=False).read_bytes() == BODY
    assert len(server.requests) == n


def test_online_path_of_missing_model_says_pull(server, tmp_path):
    with pytest.raises(StoreError, match="run `edgewise pull tiny`"):
        make_store(tmp_path, entry(server), offline=False).path("tiny")


def test_cached_file_rehashed_on_every_use_and_tampering_caught(server, tmp_path, monkeypatch):
    store = make_store(tmp_path, entry(server), offline=False)
    p = store.pull("tiny", progress=False)
    import sdk.bundle.store as store_mod

    calls = []
    real = store_mod.file_sha256
    monkeypatch.setattr(store_mod, "file_sha256", lambda path: calls.append(path) or real(path))
    store.path("tiny")
    store.path("tiny")
    assert calls == [p, p]  # size + mtime are never taken as proof
    # corrupt in place keeping the same size and mtime (what `touch -r` or a copy preserves)
    st = p.stat()
    data = bytearray(p.read_bytes())
    data[10] ^= 0xFF
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert p.stat().st_size == st.st_size and p.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(IntegrityError, match=r"expected [0-9a-f]{64}, got [0-9a-f]{64}.*--force"):
        store.path("tiny")
    assert store.status("tiny") == "corrupt"
    # pull notices the corruption and downloads again
    assert store.pull("tiny", progress=False).read_bytes() == BODY


def test_download_stops_as_soon_as_it_passes_the_declared_size(tmp_path):
    """A body longer than declared is cut while it streams, not after it is all on disk."""
    import io

    from sdk.bundle.download import _copy_stream

    class Counting(io.BytesIO):
        read_bytes = 0

        def read(self, n=-1):
            b = super().read(n)
            Counting.read_bytes += len(b)
            return b

    src = Counting(b"\0" * (50 << 20))
    part = tmp_path / "m.onnx.part"
    with pytest.raises(IntegrityError, match="larger than the 3600000 bytes"):
        _copy_stream(src, part, "wb", None, 0, False, limit=3_600_000)
    assert Counting.read_bytes <= 3_600_000 + (1 << 20) and not part.exists()
    # file:// sources too (the same copy loop)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(400_000))
    store = ModelStore(cache_dir=tmp_path / "c", catalog={"models": [
        {"name": "big", "url": big.as_uri(), "sha256": sha(b"x"), "size": 300_000}]})
    with pytest.raises(IntegrityError, match="larger than the 300000 bytes"):
        store.pull("big", progress=False)
    assert not any((tmp_path / "c" / "models" / "big").iterdir())


def test_file_copied_into_cache_by_hand_is_accepted_offline(server, tmp_path):
    d = tmp_path / "cache" / "models" / "tiny"
    d.mkdir(parents=True)
    (d / "m.onnx").write_bytes(BODY)
    assert make_store(tmp_path, entry(server), offline=True).path("tiny") == d / "m.onnx"


def test_unpinned_entry_needs_trust_on_first_use(server, tmp_path):
    e = entry(server, sha256=None, size=None)
    store = make_store(tmp_path, e, offline=False)
    with pytest.raises(StoreError, match="no pinned SHA-256.*--trust-on-first-use"):
        store.pull("tiny", progress=False)
    assert server.requests == []
    p = store.pull("tiny", progress=False, trust_on_first_use=True)
    assert p.read_bytes() == BODY
    rec = json.loads((tmp_path / "cache" / "lock.json").read_text())["models"]["tiny"]["m.onnx"]
    assert rec["tofu"] is True and rec["sha256"] == sha(BODY)
    assert store.hashes("tiny") == {"m.onnx": sha(BODY)}
    # later uses check against the recorded hash
    server.files["/m.onnx"] = OTHER
    with pytest.raises(IntegrityError, match="expected " + sha(BODY)):
        store.pull("tiny", progress=False, force=True)
    assert store.path("tiny").read_bytes() == BODY


def test_multi_file_entry(server, tmp_path):
    e = {"name": "whisper-like", "licence": "MIT", "files": [
        {"relpath": "encoder_model.onnx", "url": server.url + "/m.onnx", "sha256": sha(BODY)},
        {"relpath": "decoder_model_merged.onnx", "url": server.url + "/other.bin", "sha256": sha(OTHER)},
        {"relpath": "tokenizer.json", "url": server.url + "/tok.json", "sha256": None},
    ]}
    store = make_store(tmp_path, e, offline=False)
    with pytest.raises(StoreError, match="'tokenizer.json' has no pinned SHA-256"):
        store.pull("whisper-like", progress=False)
    folder = store.pull("whisper-like", progress=False, trust_on_first_use=True)
    assert folder == tmp_path / "cache" / "models" / "whisper-like" and folder.is_dir()
    assert (folder / "decoder_model_merged.onnx").read_bytes() == OTHER
    assert store.path("whisper-like") == folder
    (folder / "tokenizer.json").unlink()
    offline = make_store(tmp_path, e, offline=True)
    with pytest.raises(OfflineError, match=r"copy the files \(tokenizer.json\)"):
        offline.path("whisper-like")


def test_list_reports_status(server, tmp_path):
    store = make_store(tmp_path, entry(server), entry(server, name="other", path="/other.bin", body=OTHER),
                       offline=False)
    store.pull("tiny", progress=False)
    items = {it["name"]: it for it in store.list()}
    assert items["tiny"]["cached"] is True and items["tiny"]["status"] == "cached"
    assert items["other"]["cached"] is False and items["other"]["status"] == "missing"
    assert items["yolox-nano"]["pinned"] is True and items["whisper-tiny-en"]["pinned"] is False
    json.dumps(items)  # JSON-ready


def test_unknown_name_suggests(tmp_path):
    with pytest.raises(StoreError, match="did you mean 'yolox-nano'"):
        ModelStore(cache_dir=tmp_path).pull("yolox-nan")


# --- catalogs ------------------------------------------------------------------------
def test_builtin_catalog():
    store = ModelStore()
    y = store.catalog["yolox-nano"]
    assert y.sha256 == "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd"
    assert y.url.startswith("https://github.com/Megvii-BaseDetection/YOLOX/releases/")
    assert "pinned" in y.description
    for entry in store.catalog.values():   # user-facing text names no folder of the build machine
        assert not any(s in entry.description for s in ("shared/", "../", "/work")), entry.name
    for name, need in (("whisper-tiny-en", {"onnx/encoder_model_quantized.onnx",
                                            "onnx/decoder_model_merged_quantized.onnx", "tokenizer.json",
                                            "generation_config.json"}),
                       ("whisper-base", {"onnx/encoder_model_quantized.onnx",
                                         "onnx/decoder_model_merged_quantized.onnx", "tokenizer.json"}),
                       ("opus-mt-en-es", {"encoder_model.onnx", "decoder_model_merged.onnx", "tokenizer.json"})):
        files = {f.relpath for f in store.catalog[name].file_list()}
        assert need <= files, name
        assert all(f.url.startswith("https://huggingface.co/") for f in store.catalog[name].file_list())
    assert all("/onnx-community/" in f.url for f in store.catalog["whisper-base"].file_list())


def test_builtin_yolox_hash_matches_shared_copy(yolox_path, tmp_path):
    from sdk.bundle import file_sha256

    y = ModelStore().catalog["yolox-nano"]
    assert file_sha256(yolox_path) == y.sha256 and yolox_path.stat().st_size == y.size
    # the documented offline route: copy the file into the cache
    store = ModelStore(cache_dir=tmp_path, offline=True)
    dest = store.target("yolox-nano")
    dest.parent.mkdir(parents=True)
    shutil.copyfile(yolox_path, dest)
    assert store.path("yolox-nano") == dest


def test_user_catalogs_merge(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("EDGEWISE_HOME", str(home))
    (home / "catalog.json").write_text(json.dumps({"schema_version": "edgewise.catalog/1", "models": [
        {"name": "yolox-nano", "url": "https://mirror.example/yolox.onnx", "sha256": "a" * 64},
        {"name": "mine", "url": "https://mirror.example/mine.onnx", "sha256": "b" * 64}]}))
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps([{"name": "mine", "url": "file:///models/mine.onnx", "sha256": "c" * 64,
                                  "kind": "file"}]))
    store = ModelStore(catalog=extra)
    assert store.cache_dir == home
    assert store.catalog["yolox-nano"].url == "https://mirror.example/yolox.onnx"
    assert store.catalog["mine"].sha256 == "c" * 64 and store.catalog["mine"].kind == "file"
    assert "opus-mt-en-es" in store.catalog


@pytest.mark.parametrize("data, match", [
    ({"models": [{"name": "x", "url": "http://h/x", "sha": "a"}]}, "sha"),
    ({"models": [{"name": "x", "url": "ftp://h/x"}]}, "url must use"),
    ({"models": [{"name": "../x", "url": "http://h/x"}]}, "pattern"),
    ({"models": [{"name": "x"}]}, "needs a 'url'"),
    ({"models": [{"name": "x", "url": "http://h/x", "files": [{"relpath": "a", "url": "http://h/a"}]}]}, "has 'files'"),
    ({"models": [{"name": "x", "files": [{"relpath": "../a", "url": "http://h/a"}]}]}, "climbs out"),
    ({"models": [{"name": "x", "url": "http://h/x"}, {"name": "x", "url": "http://h/y"}]}, "twice"),
    ({"schema_version": "edgewise.catalog/2", "models": []}, "schema_version"),
    ({"model": []}, "unknown top-level"),
])
def test_bad_catalogs(tmp_path, data, match):
    p = tmp_path / "c.json"
    p.write_text(json.dumps(data))
    with pytest.raises(StoreError, match=match):
        ModelStore(cache_dir=tmp_path, catalog=p)


def test_catalog_entry_cache_filename():
    assert CatalogEntry(name="a", url="https://h/dl/yolox_nano.onnx").cache_filename() == "yolox_nano.onnx"
    assert CatalogEntry(name="a", url="https://h/?id=3").cache_filename() == "model.onnx"
    assert CatalogEntry(name="a", url="https://h/x", kind="bundle-archive",
                        filename="b.ewb").cache_filename() == "b.ewb"
    with pytest.raises(ValueError):
        CatalogEntry(name="a", url="https://h/x", filename="../b.ewb")
