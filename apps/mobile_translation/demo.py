"""Offline demo: an English sentence spoken by eSpeak NG is transcribed, translated to
Spanish and spoken again, with the default engines (``--asr auto``: Whisper tiny.en when it
is in the store, else PocketSphinx; Apertium; eSpeak NG).

Where the project's ``../shared/models/whisper-tiny.en`` exists and the store has no
Whisper yet, the demo installs it the way an offline device is provisioned
(``edgewise pull whisper-tiny-en --from FOLDER --trust-on-first-use``) and says so.

    python -m apps.mobile_translation.demo [OUT_DIR]
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

SENTENCE = "Where is the hospital?"
VOICES = {"pocketsphinx": "en-us+klatt4", "whisper-onnx": "en-us"}   # the eSpeak NG voice each hears best (measured)
SHARED = Path(os.environ.get("EDGEWISE_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))


def provision_whisper(store=None) -> str | None:
    """Install whisper-tiny-en from ../shared when the store lacks it; returns what was done."""
    from sdk.bundle import ModelStore
    from sdk.errors import StoreError

    store = store or ModelStore()
    src = SHARED / "models" / "whisper-tiny.en"
    try:
        store.path("whisper-tiny-en")
        return None
    except StoreError:
        pass
    if not (src / "onnx").is_dir():
        return None
    store.import_from("whisper-tiny-en", src, trust_on_first_use=True)
    return f"installed whisper-tiny-en from {src} (edgewise pull whisper-tiny-en --from {src} --trust-on-first-use)"


def demo(out_dir: str | Path | None = None, sentence: str = SENTENCE) -> dict:
    from apps.mobile_translation.audio_io import write_audio
    from apps.mobile_translation.engines import EngineConfig, SpeechStack
    from apps.mobile_translation.filemode import translate_file
    from apps.mobile_translation.tts.espeak_engine import EspeakSynthesizer

    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="edgewise_translate_demo_"))
    out.mkdir(parents=True, exist_ok=True)
    done = provision_whisper()
    if done:
        print(done)
    with SpeechStack(EngineConfig(src="en", tgt="es", num_beams=5)) as engines:   # file mode's default
        plan = engines.plan
        speech = EspeakSynthesizer(VOICES[plan.asr], rate_wpm=150).synthesize(sentence)
        pause = np.zeros(int(0.5 * speech.sample_rate), np.float32)
        wav_in = write_audio(out / "input_en.wav", np.concatenate([pause, speech.audio, pause]), speech.sample_rate)
        res = translate_file(wav_in, out, engines)
    asr = f"Whisper, {plan.asr_model}" if plan.asr == "whisper-onnx" else "PocketSphinx"
    print(f"spoken (eSpeak NG, {speech.duration_s:.1f} s): {sentence}")
    print(f"recognised ({asr}):  {res.transcript}")
    print(f"translated (Apertium):      {res.translation}")
    for note in res.notes:
        print(f"note: {note}")
    print(f"processed {res.audio_s:.1f} s of audio in {res.timings['total_s']:.2f} s (RTF {res.timings['rtf']:.2f})")
    print(f"input WAV: {wav_in}")
    for kind, path in res.outputs.items():
        print(f"{kind:>10}: {path}")
    return res.to_dict()


if __name__ == "__main__":
    demo(sys.argv[1] if len(sys.argv) > 1 else None)
