"""File mode keeps what is done: JSON/SRT rewritten after every piece, valid after Ctrl-C (issue 14)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from fakes import EchoMT, LevelVAD, NoiseTTS, bursts

from apps.mobile_translation.asr.base import Transcript
from apps.mobile_translation.engines import EngineConfig


class ResettableVAD(LevelVAD):
    def reset(self):
        pass


class InterruptingASR:
    """Transcribes bursts by amplitude; raises KeyboardInterrupt (what SIGINT raises) at burst ``stop_at``."""

    name, lang = "fake", "en"

    def __init__(self, stop_at):
        self.stop_at, self.calls = stop_at, 0

    def transcribe(self, audio):
        self.calls += 1
        if self.calls > self.stop_at:
            raise KeyboardInterrupt
        k = int(round(float(np.abs(audio).max()) * 10)) - 1
        return Transcript(f"utterance {k}", [], len(audio) / 16000, 0.01)

    def close(self):
        pass


def _engines(asr):
    return SimpleNamespace(asr=asr, mt=EchoMT(), tts=NoiseTTS(), cfg=EngineConfig(src="en", tgt="es"),
                           plan=None, translate=EchoMT().translate)


def test_interrupted_run_leaves_valid_outputs(tmp_path):
    from apps.mobile_translation.audio_io import write_audio
    from apps.mobile_translation.filemode import translate_file

    wav = write_audio(tmp_path / "talk.wav", bursts(5, on_s=0.5, off_s=0.8), 16000)
    with pytest.raises(KeyboardInterrupt):
        translate_file(wav, tmp_path / "out", _engines(InterruptingASR(stop_at=3)), vad=ResettableVAD())
    data = json.loads((tmp_path / "out" / "talk.json").read_text())
    assert data["complete"] is False
    assert [u["text"] for u in data["utterances"]] == ["utterance 0", "utterance 1", "utterance 2"]
    assert data["translation"] == "enunciado 0 enunciado 1 enunciado 2"
    srt = (tmp_path / "out" / "talk.es.srt").read_text()
    assert srt.count("-->") == 3 and srt.startswith("1\n") and "enunciado 2" in srt
    assert (tmp_path / "out" / "talk.es.wav").is_file()
    assert not list((tmp_path / "out").glob(".*.tmp"))
    # an uninterrupted run completes and says so
    res = translate_file(wav, tmp_path / "full", _engines(InterruptingASR(stop_at=99)), vad=ResettableVAD())
    assert res.complete and len(res.utterances) == 5
    assert json.loads((tmp_path / "full" / "talk.json").read_text())["complete"] is True


def test_out_pointing_at_a_file_is_exit_2(tmp_path, capsys):
    from sdk.cli.main import main

    (tmp_path / "f").write_text("x")
    wav = tmp_path / "a.wav"
    from apps.mobile_translation.audio_io import write_audio

    write_audio(wav, np.zeros(1600, np.float32), 16000)
    pytest.importorskip("pocketsphinx")
    assert main(["translate", "file", str(wav), "--out", str(tmp_path / "f"), "--to", "en"]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_sigint_to_the_cli_keeps_finished_utterances(tmp_path, speak):
    """A real SIGINT to `edgewise translate file` after the first utterance is written."""
    pytest.importorskip("pocketsphinx")
    from apps.mobile_translation.audio_io import write_audio

    sil = np.zeros(16000, np.float32)
    parts = [speak("where is the hospital"), sil] * 40     # long enough that it cannot finish before the signal
    wav = write_audio(tmp_path / "long.wav", np.concatenate(parts), 16000)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "sdk.cli.main", "translate", "file", str(wav), "--out", str(out),
                             "--to", "en", "--asr", "pocketsphinx"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            # a shell running us in the background ignores SIGINT, and Python keeps an
                            # ignored SIGINT ignored: give the child the default so Ctrl-C reaches it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    js = out / "long.json"
    end = time.monotonic() + 120
    while time.monotonic() < end and proc.poll() is None:
        if js.is_file() and json.loads(js.read_text())["utterances"]:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be interrupted")
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(60)
    data = json.loads(js.read_text())
    if rc == 0 and data["complete"]:
        pytest.skip("the run finished between the last poll and the signal")
    assert rc == 130
    assert data["complete"] is False and 1 <= len(data["utterances"]) < 40
    assert (out / "long.en.srt").read_text().count("-->") == len(data["utterances"])
