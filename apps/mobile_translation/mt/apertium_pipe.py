"""One long-lived Apertium pipeline in null-flush mode: no process start per sentence.

``apertium -u eng-spa`` starts a dozen programs for every call (about 0.4 s on 2 cores).
Here the pair's mode pipeline (``/usr/share/apertium/modes/<pair>.mode``, rewritten with
``-z`` on every program by ``apertium-wblank-mode -z``) runs once under bash and stays up:
each text goes in as Apertium stream format followed by a NUL byte; every program flushes
its output when it reads the NUL, so the translation comes back followed by a NUL. The
reply is read byte-wise until that NUL (never line by line: a reply need not end a line).

Why ``apertium -z`` itself hangs: its text deformatter (``apertium-destxt``, a flex scanner)
has no null-flush mode and holds its input back, and the bilingual ``lt-proc -b`` waits for
the blank after a sentence's last word. So this class does the deformatter's and the
reformatter's job in Python (escape ``\\ ^ $ @ [ ] { } / < >``; append the ``.[][\\n]``
sentence end ``apertium-destxt`` appends; on the way back drop that period and unwrap the
``[...]`` blanks as ``apertium-retxt`` does). Texts it cannot represent exactly (control
characters, ``~``) are refused with ``ValueError`` so the caller uses the one-shot command.

A crashed or silent pipeline raises ``InferenceError`` and is restarted on the next call.
"""
from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from sdk.errors import DependencyMissingError, InferenceError

_ESCAPE = set("\\^$@[]{}/<>")
_UNSAFE = set("~\0")


def to_stream(text: str) -> str:
    """``text`` (one line) as ``apertium-destxt`` writes it, without its NUL."""
    if any(c in _UNSAFE or (ord(c) < 32) for c in text):
        raise ValueError(f"text holds a character the null-flush pipeline does not pass through: {text!r}")
    return "".join("\\" + c if c in _ESCAPE else c for c in text) + ".[][\n]"


def from_stream(out: str) -> str:
    """Apertium stream format back to text, as ``apertium-retxt`` does (one line, stripped)."""
    res: list[str] = []
    i, n = 0, len(out)
    while i < n:
        c = out[i]
        if c == "\\" and i + 1 < n:
            res.append(out[i + 1])
            i += 2
        elif c == "." and out.startswith(".[]", i):   # the sentence end the deformatter added
            i += 3
        elif c == "[":                                  # a blank: its contents are the text
            j = i + 1
            while j < n and out[j] != "]":
                j += 2 if out[j] == "\\" else 1
            res.append(out[i + 1:j].replace("\\", ""))
            i = j + 1
        else:
            res.append(c)
            i += 1
    return "".join(res).strip()


def null_flush_script(pair: str, datadir: str | Path | None = None) -> str:
    """The bash pipeline of ``pair`` with ``-z`` on every program (``$1``: generator option)."""
    datadir = Path(datadir or os.environ.get("APERTIUM_DATADIR", "/usr/share/apertium"))
    mode = datadir / "modes" / f"{pair}.mode"
    if not mode.is_file():
        raise DependencyMissingError(f"Apertium has no mode file {mode} for {pair}")
    tool = shutil.which("apertium-wblank-mode")
    if tool is None:
        raise DependencyMissingError("apertium-wblank-mode (Apertium >= 3.8) is not on PATH; it writes the "
                                     "null-flush pipeline")
    proc = subprocess.run([tool, "-z", str(mode)], capture_output=True, text=True, timeout=20)
    script = proc.stdout.strip()
    if proc.returncode != 0 or not script:
        raise DependencyMissingError(f"apertium-wblank-mode -z {mode} failed (exit {proc.returncode}): "
                                     f"{proc.stderr.strip()[:200]}")
    return script


class ApertiumPipe:
    """``ask(text) -> translation`` over one persistent null-flush pipeline (thread-safe)."""

    def __init__(self, pair: str, timeout_s: float = 10.0, mark_unknown: bool = False,
                 datadir: str | Path | None = None):
        self.pair, self.timeout_s = pair, float(timeout_s)
        self.script = null_flush_script(pair, datadir)
        # $1: the generator's option (-n hides the * of unknown words, as apertium -u); $2: the tagger's
        self.args = ["-g" if mark_unknown else "-n", ""]
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.starts = 0

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ)
        if "utf" not in (env.get("LC_ALL") or env.get("LC_CTYPE") or env.get("LANG") or "").lower():
            env["LC_ALL"] = "C.UTF-8"
        self._proc = subprocess.Popen(["bash", "-c", self.script, f"apertium-{self.pair}", *self.args],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      bufsize=0, start_new_session=True, env=env)
        self.starts += 1
        return self._proc

    def ask(self, text: str) -> str:
        payload = to_stream(" ".join(text.split())).encode("utf-8") + b"\0"
        with self._lock:
            proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
            try:
                proc.stdin.write(payload)
                proc.stdin.flush()
                raw = self._read_reply(proc)
            except (OSError, InferenceError) as exc:
                self._kill()
                if isinstance(exc, InferenceError):
                    raise
                raise InferenceError(f"the Apertium {self.pair} pipeline stopped: {exc}") from exc
        return from_stream(raw.decode("utf-8", errors="replace"))

    def _read_reply(self, proc: subprocess.Popen) -> bytes:
        fd, buf = proc.stdout.fileno(), bytearray()
        deadline = time.monotonic() + self.timeout_s
        while b"\0" not in buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            if not ready:
                raise InferenceError(f"the Apertium {self.pair} pipeline sent no reply within {self.timeout_s:.0f} s "
                                     f"(got {bytes(buf[:80])!r}); it is restarted on the next call")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise InferenceError(f"the Apertium {self.pair} pipeline exited (code {proc.poll()}) before it "
                                     f"answered; it is restarted on the next call")
            buf += chunk
        reply, _, rest = bytes(buf).partition(b"\0")
        if rest.strip(b"\0"):
            raise InferenceError(f"the Apertium {self.pair} pipeline answered more than was asked: {rest[:80]!r}")
        return reply

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                try:
                    proc.stdin.close()   # end of input: every program exits
                    proc.wait(timeout=2)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            self._kill()
