"""File mode (WAV → JSON + SRT + WAV), the engine registry and the `edgewise translate` CLI."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from apps.mobile_translation.engines import EngineConfig, Engines


@pytest.fixture(scope="module")
def offline_engines():
    pytest.importorskip("pocketsphinx")
    if shutil.which("apertium") is None:
        pytest.skip("apertium is not installed (apt install apertium apertium-eng-spa)")
    # PocketSphinx named: with asr "auto" a module-scoped fixture would see the user's model store
    # (built before the per-test isolated EDGEWISE_HOME) and run Whisper if it was ever pulled
    with Engines(EngineConfig(src="en", tgt="es", asr="pocketsphinx")) as e:
        yield e


@pytest.fixture(scope="module")
def two_sentence_wav(speak, tmp_path_factory):
    from apps.mobile_translation.audio_io import write_audio

    a = np.concatenate([speak("where is the hospital"), np.zeros(16000, np.float32),
                        speak("thank you very much for your help")])
    return write_audio(tmp_path_factory.mktemp("wav") / "talk.wav", a, 16000)


def test_file_mode_outputs(offline_engines, two_sentence_wav, tmp_path):
    from apps.mobile_translation.audio_io import read_audio_16k
    from apps.mobile_translation.filemode import translate_file

    res = translate_file(two_sentence_wav, tmp_path, offline_engines)
    assert len(res.utterances) == 2                        # the VAD split the two sentences
    first, second = res.utterances
    assert 0.2 < first.start < first.end < second.start < second.end <= res.audio_s + 0.05
    assert "hospital" in first.translation.lower()
    assert all(first.start <= w["start"] < w["end"] <= first.end + 0.05 for w in first.words)
    data = json.loads((tmp_path / "talk.json").read_text())
    assert data["utterances"][0]["text"] == first.text and data["translation"] == res.translation
    srt = (tmp_path / "talk.es.srt").read_text()
    assert srt.startswith("1\n00:00:00,") and "\n\n2\n" in srt and "-->" in srt
    assert (tmp_path / "talk.en.srt").read_text().count("-->") == 2
    out, sr = read_audio_16k(tmp_path / "talk.es.wav")
    assert sr == offline_engines.tts.sample_rate and len(out) / 16000 > 1.0


def test_srt_formatting():
    from apps.mobile_translation.filemode import to_srt

    assert to_srt([(0.0, 1.5, "hola"), (3661.25, 3662.0, "adiós"), (5, 6, "")]) == (
        "1\n00:00:00,000 --> 00:00:01,500\nhola\n\n2\n01:01:01,250 --> 01:01:02,000\nadiós\n")


def test_registry_errors(monkeypatch):
    from apps.mobile_translation.engines import make_recognizer, make_translator
    from sdk.errors import DependencyMissingError, StoreError

    with pytest.raises(StoreError, match="edgewise pull whisper-tiny-en"):
        make_recognizer(EngineConfig(asr="whisper-onnx"))     # not pulled: no silent download
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DependencyMissingError, match="apt install apertium"):
        make_translator(EngineConfig(mt="apertium"))
    with pytest.raises(ValueError):
        EngineConfig(asr="nope")
    with pytest.raises(ValueError):
        EngineConfig(speed=2)


def test_cli_file_and_help(offline_engines, two_sentence_wav, tmp_path, capsys):
    from sdk.cli.main import main

    assert main(["translate", "file", str(two_sentence_wav), "--from", "en", "--to", "es",
                 "--out", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["engines"] == {"asr": "pocketsphinx", "mt": "apertium", "tts": "espeak"}
    assert len(out["utterances"]) == 2 and (tmp_path / "talk.es.wav").is_file()
    assert main(["translate", "file", str(tmp_path / "missing.wav"), "--out", str(tmp_path)]) == 2
    assert main(["translate", "file", str(two_sentence_wav), "--out", str(tmp_path),
                 "--asr", "whisper-onnx"]) == 3        # StoreError: not pulled
    with pytest.raises(SystemExit):
        main(["translate", "live", "--asr", "nope"])


def test_demo_runs_offline(tmp_path, capsys):
    pytest.importorskip("pocketsphinx")
    if shutil.which("apertium") is None:
        pytest.skip("apertium is not installed")
    from apps.mobile_translation.demo import demo

    res = demo(tmp_path)
    out = capsys.readouterr().out
    assert "hospital" in res["translation"].lower(), out
    assert "translated (Apertium)" in out


def test_live_cli_passes_decode_on_pause(monkeypatch):
    """`edgewise translate live --[no-]decode-on-pause` reaches LiveConfig (the API option it names; on by default)."""
    import apps.mobile_translation.live as live
    from sdk.cli.main import main

    seen = {}

    class Stop(Exception):
        pass

    def fake(cfg, on_event=None):
        seen["cfg"] = cfg
        raise Stop

    monkeypatch.setattr(live, "LiveTranslator", fake)
    for flag, want in (([], True), (["--no-decode-on-pause"], False), (["--decode-on-pause"], True)):
        with pytest.raises(Stop):
            main(["translate", "live", "--asr", "pocketsphinx", "--no-speak", *flag])
        assert seen["cfg"].decode_on_pause is want
