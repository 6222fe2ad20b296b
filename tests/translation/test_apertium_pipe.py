"""The persistent null-flush Apertium pipeline: same output as ``apertium -u``, restarts, fallback."""
from __future__ import annotations

import os
import shutil
import signal

import pytest

from apps.mobile_translation.mt.apertium_pipe import ApertiumPipe, from_stream, to_stream
from sdk.errors import InferenceError

SENTENCES = ["Where is the hospital?", "The doctor will see you in ten minutes, please wait here.",
             "hello world", "a <b> c [d] e {f} g/h i\\j k@l ^m$", "It's 5 o'clock; $20, 50% off!",
             "one. two. three", "", "Hello... is anyone there"]


@pytest.mark.parametrize("text, stream", [
    ("Where is it?", "Where is it?.[][\n]"),
    ("a <b> [c] {d} e/f g\\h i@j ^k$", "a \\<b\\> \\[c\\] \\{d\\} e\\/f g\\\\h i\\@j \\^k\\$.[][\n]"),
    ("", ".[][\n]"),
])
def test_to_stream_escapes_as_the_deformatter(text, stream):
    assert to_stream(text) == stream
    assert from_stream(stream) == text


@pytest.mark.parametrize("out, text", [
    ("Dónde es el hospital?.[][\n]", "Dónde es el hospital?"),
    ("a.[x].[][\n]", "a.x"),          # a period before a non-empty blank is text
    ("a..[][\n]", "a."),
    ("a[  ]b\\[c\\].[][\n]", "a  b[c]"),
])
def test_from_stream_reformats_as_retxt(out, text):
    assert from_stream(out) == text


@pytest.mark.parametrize("bad", ["a ~ b", "tab\there", "nul\0"])
def test_to_stream_refuses_what_it_cannot_carry(bad):
    with pytest.raises(ValueError, match="null-flush"):
        to_stream(bad)


@pytest.fixture(scope="module")
def translator():
    if shutil.which("apertium") is None or shutil.which("apertium-wblank-mode") is None:
        pytest.skip("apertium is not installed (apt install apertium apertium-eng-spa)")
    from apps.mobile_translation.mt.apertium_engine import ApertiumTranslator

    try:
        tr = ApertiumTranslator("en", "es")
    except Exception as exc:   # DependencyMissingError: the pair is not installed
        pytest.skip(str(exc))
    yield tr
    tr.close()


def test_pipe_matches_the_one_shot_command(translator):
    spawned = [translator.translate_batch([s])[0].text for s in SENTENCES]   # one `apertium -u` each
    translator.warm_up()
    assert translator.pipe is not None
    piped = [translator.translate(s).text for s in SENTENCES]
    assert piped == spawned
    assert translator.pipe.starts == 1 and translator.pipe_failures == 0
    assert piped[0] == "Dónde es el hospital?"


def test_a_batch_translates_each_line_as_it_would_alone(translator):
    """Lines without end punctuation do not run into the next one ("I have a fever" came out
    "I tiene una fiebre" in a batch, "Tengo una fiebre" alone)."""
    texts = [*SENTENCES, "I have a fever", "thank you very much"]
    alone = [translator.translate_batch([s])[0].text for s in texts]
    assert [t.text for t in translator.translate_batch(texts)] == alone
    assert alone[2] == "hola Mundo" and alone[-2] == "Tengo una fiebre"


def test_pipe_restarts_after_a_crash():
    if shutil.which("apertium-wblank-mode") is None:
        pytest.skip("apertium is not installed")
    with ApertiumPipeCtx() as pipe:
        first = pipe.ask("The doctor is here.")
        os.killpg(pipe._proc.pid, signal.SIGKILL)
        pipe._proc.wait()
        assert pipe.ask("The doctor is here.") == first
        assert pipe.starts == 2


def test_silent_pipeline_times_out_with_a_typed_error():
    if shutil.which("apertium-wblank-mode") is None:
        pytest.skip("apertium is not installed")
    with ApertiumPipeCtx(timeout_s=0.5) as pipe:
        pipe.script = "cat > /dev/null"      # reads everything, never answers
        with pytest.raises(InferenceError, match="no reply within"):
            pipe.ask("hello")
        assert pipe._proc is None            # killed, restarted on the next call
        pipe.script = "exit 3"
        with pytest.raises(InferenceError, match="exited|stopped"):   # before or after it read the text
            pipe.ask("hello")


def test_translator_falls_back_to_a_process_per_sentence(translator):
    expected = translator.translate_batch(["Thank you very much."])[0].text
    translator.warm_up()
    good = translator.pipe.script
    translator.pipe._kill()
    translator.pipe.script = "exit 3"
    try:
        assert translator.translate("Thank you very much.").text == expected
        assert translator.pipe_failures == 1
        assert translator.translate("a ~ b").text    # not for the stream format: the one-shot command
    finally:
        translator.pipe.script = good


class ApertiumPipeCtx:
    def __init__(self, **kw):
        try:
            self.pipe = ApertiumPipe("eng-spa", **kw)
        except Exception as exc:
            pytest.skip(str(exc))

    def __enter__(self):
        return self.pipe

    def __exit__(self, *exc):
        self.pipe.close()
