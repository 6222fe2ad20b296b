"""Rule-based translation with Apertium, run as a subprocess (``apertium -u eng-spa``).

An offline fallback that needs no model download: Debian/Ubuntu ``apt install apertium
apertium-eng-spa`` (other pairs: ``apertium-<pair>``). ``-u`` hides the unknown-word marks.

``translate`` (one sentence, the live loop) goes through one persistent null-flush pipeline
(:mod:`apps.mobile_translation.mt.apertium_pipe`, ~10 ms instead of a ~0.4 s process start);
where that pipeline cannot run or fails, the sentence goes through ``apertium -u`` as before.
``translate_batch`` (file mode) starts ``apertium -u`` once for all its lines.
"""
from __future__ import annotations

import shutil
import subprocess
import time

from apps.mobile_translation.mt.apertium_pipe import ApertiumPipe
from apps.mobile_translation.mt.base import Translation
from sdk import logger
from sdk.closing import Closing
from sdk.errors import DependencyMissingError, InferenceError

# ISO 639-1 → Apertium's three-letter codes
_CODES = {"en": "eng", "es": "spa", "fr": "fra", "ca": "cat", "pt": "por", "it": "ita", "de": "deu",
          "gl": "glg", "eo": "epo", "ro": "ron", "oc": "oci"}


def apertium_pair(src: str, tgt: str) -> str:
    try:
        return f"{_CODES[src]}-{_CODES[tgt]}"
    except KeyError as exc:
        raise ValueError(f"no Apertium code for language {exc.args[0]!r}; known: {sorted(_CODES)}; "
                         f"pairs installed here: {installed_pairs() or 'none'}") from None


def installed_pairs(binary: str = "apertium") -> list[str]:
    """The pairs ``apertium -l`` lists as ISO 639-1 ``src-tgt`` (e.g. ``en-es``); [] without Apertium."""
    exe = shutil.which(binary)
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-l"], capture_output=True, text=True, timeout=20).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return []
    iso = {v: k for k, v in _CODES.items()}
    pairs = []
    for p in out:
        a, _, b = p.partition("-")
        if a in iso and b in iso:
            pairs.append(f"{iso[a]}-{iso[b]}")
    return sorted(set(pairs))


class ApertiumTranslator(Closing):
    name = "apertium"

    def __init__(self, src: str = "en", tgt: str = "es", timeout_s: float = 20.0, binary: str = "apertium",
                 persistent: bool = True):
        self.src, self.tgt, self.timeout_s = src, tgt, float(timeout_s)
        self.pair = apertium_pair(src, tgt)
        exe = shutil.which(binary)
        if exe is None:
            raise DependencyMissingError(
                f"the Apertium command {binary!r} is not on PATH; install it with "
                f"`apt install apertium apertium-{self.pair}` (or pick --mt marian-onnx)")
        self.binary = exe
        self._check_pair()
        self.persistent = persistent
        self.pipe: ApertiumPipe | None = None   # started by the first translate() or warm_up()
        self.pipe_failures = 0

    def warm_up(self) -> None:
        """Start the persistent pipeline now, so the first sentence does not pay for it."""
        self._pipe()

    def _pipe(self) -> ApertiumPipe | None:
        if self.pipe is not None or not self.persistent:
            return self.pipe
        try:
            self.pipe = ApertiumPipe(self.pair, timeout_s=min(self.timeout_s, 10.0))
            self.pipe.ask("Hello.")
        except (DependencyMissingError, InferenceError, OSError) as exc:
            logger.warning("persistent Apertium pipeline unavailable (%s); each sentence starts apertium", exc)
            if self.pipe is not None:
                self.pipe.close()
            self.pipe, self.persistent = None, False
        return self.pipe

    def _check_pair(self) -> None:
        try:
            proc = subprocess.run([self.binary, "-l"], capture_output=True, text=True, timeout=self.timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DependencyMissingError(f"could not run {self.binary} -l: {exc}") from exc
        pairs = proc.stdout.split()
        if self.pair not in pairs:
            usable = installed_pairs(self.binary)
            raise DependencyMissingError(
                f"Apertium has no {self.pair} pair installed (installed: {pairs or 'none'}; as --from/--to: "
                f"{', '.join(usable) or 'none'}; Whisper base also translates any of its languages --to en); "
                f"install the pair with `apt install apertium-{self.pair}` if Debian has it")

    def translate(self, text: str) -> Translation:
        pipe = self._pipe()
        if pipe is not None:
            t0 = time.perf_counter()
            try:
                return Translation(text, pipe.ask(text), time.perf_counter() - t0)
            except ValueError:
                pass             # a character the stream format cannot carry: the one-shot command
            except InferenceError as exc:
                self.pipe_failures += 1
                logger.warning("%s; translating this sentence with a new apertium process", exc)
        return self.translate_batch([text])[0]

    def translate_batch(self, texts: list[str]) -> list[Translation]:
        """Translate many lines with one process start (one line per text)."""
        t0 = time.perf_counter()
        clean = [" ".join(t.split()) for t in texts]
        if not any(clean):
            return [Translation(t, "", 0.0) for t in texts]
        # one line per input (line breaks are kept). Each line ends with a period of its own: alone,
        # the deformatter ends the input with one, and without it a line that lacks end punctuation
        # runs into the next ("I have a fever" -> "I tiene una fiebre" in a batch, "Tengo una fiebre" alone)
        payload = "".join(c + ".\n" for c in clean)
        try:
            proc = subprocess.run([self.binary, "-u", self.pair], input=payload, capture_output=True,
                                  text=True, timeout=self.timeout_s * max(1, len(texts) // 50 + 1))
        except subprocess.TimeoutExpired as exc:
            raise InferenceError(f"apertium {self.pair} did not answer within {exc.timeout:.0f} s") from exc
        if proc.returncode != 0:
            raise InferenceError(f"apertium {self.pair} failed (exit {proc.returncode}): {proc.stderr.strip()[:300]}")
        lines = proc.stdout.rstrip("\n").split("\n")
        if len(lines) != len(clean):
            raise InferenceError(f"apertium returned {len(lines)} lines for {len(clean)} inputs")
        dt = (time.perf_counter() - t0) / len(texts)
        return [Translation(src, _drop_added_period(out).strip(), dt) for src, out in zip(texts, lines, strict=True)]

    def close(self) -> None:
        if self.pipe is not None:
            self.pipe.close()
            self.pipe = None


def _drop_added_period(line: str) -> str:
    """The output line without the period :meth:`ApertiumTranslator.translate_batch` added."""
    line = line.rstrip()
    return line[:-1] if line.endswith(".") else line
