"""Fixtures for the translation app: speech synthesized by eSpeak NG, tiny Optimum-layout models."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.skips import file_or_skip

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

EN_VOICE = "en-us+klatt4"   # measured: the eSpeak NG voice PocketSphinx recognises best


@pytest.fixture(scope="session")
def speak():
    """speak(text, voice=EN_VOICE, pad_s=0.4) -> float32 audio at 16 kHz (with silence around)."""
    pytest.importorskip("espeakng_loader", reason="espeakng-loader (edgewise[speech]) not installed")
    from apps.mobile_translation.audio_io import to_16k
    from apps.mobile_translation.tts.espeak_engine import EspeakSynthesizer

    def _speak(text: str, voice: str = EN_VOICE, pad_s: float = 0.4, rate: int = 150) -> np.ndarray:
        sp = EspeakSynthesizer(voice, rate_wpm=rate).synthesize(text)
        a = to_16k(sp.audio, sp.sample_rate)
        pad = np.zeros(int(pad_s * 16000), np.float32)
        return np.concatenate([pad, a, pad])

    return _speak


@pytest.fixture(scope="session")
def ljspeech(shared_dir) -> Path:
    d = shared_dir / "data" / "speech" / "ljspeech"
    return file_or_skip(d / "transcripts.tsv", f"LJSpeech recordings not found at {d}").parent


def _tiny_dir(tmp_path_factory, name):
    pytest.importorskip("torch", reason="the tiny test models are exported with PyTorch (edgewise[train])")
    return tmp_path_factory.mktemp(name)


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    """A tiny Whisper export (encoder_model.onnx + decoder_model_merged.onnx + tokenizer.json)."""
    import tiny_seq2seq as ts

    d = _tiny_dir(tmp_path_factory, "tiny_whisper")
    ts.build("whisper", d, ts.whisper_vocab(d), layout="merged")
    return d


SENTENCES = ["hello world how are you", "the doctor will see you now", "where is the hospital please",
             "i have a fever and a headache", "thank you very much"] * 4


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory) -> dict[str, Path]:
    """Tiny Marian exports with the same weights in both layouts: {"merged": dir, "split": dir}."""
    import tiny_seq2seq as ts

    base = _tiny_dir(tmp_path_factory, "tiny_marian")
    split, merged = base / "split", base / "merged"
    v = ts.marian_vocab(split, SENTENCES)
    shutil.copytree(split, merged)
    ts.build("marian", split, v, layout="split")
    ts.build("marian", merged, v, layout="merged")
    return {"split": split, "merged": merged}


def _provision(shared_dir, tmp_path_factory, folder: str, name: str) -> Path:
    """A model store with ``name`` installed from ``../shared/models/<folder>`` by `edgewise pull --from`."""
    src = shared_dir / "models" / folder
    if not (src / "onnx" / "decoder_model_merged_quantized.onnx").is_file():
        pytest.skip(f"Whisper export not found at {src}")
    from sdk.cli.main import main

    home = tmp_path_factory.mktemp(f"home_{name}")
    code = main(["pull", name, "--from", str(src), "--trust-on-first-use", "--cache-dir", str(home), "--json"])
    assert code == 0
    return home


@pytest.fixture(scope="session")
def whisper_tiny_home(shared_dir, tmp_path_factory) -> Path:
    """EDGEWISE_HOME with whisper-tiny-en provisioned from ../shared (skipped where absent)."""
    return _provision(shared_dir, tmp_path_factory, "whisper-tiny.en", "whisper-tiny-en")


@pytest.fixture(scope="session")
def whisper_base_home(shared_dir, tmp_path_factory) -> Path:
    return _provision(shared_dir, tmp_path_factory, "whisper-base", "whisper-base")
