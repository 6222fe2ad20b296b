"""Offline demo: an English sentence spoken by eSpeak NG is transcribed, translated to
Spanish and spoken again, with the default engines (PocketSphinx + Apertium + eSpeak NG).

    python -m apps.mobile_translation.demo [OUT_DIR]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

SENTENCE = "Where is the hospital?"
VOICE = "en-us+klatt4"   # the eSpeak NG voice PocketSphinx recognises best (measured)


def demo(out_dir: str | Path | None = None, sentence: str = SENTENCE) -> dict:
    from apps.mobile_translation.audio_io import write_audio
    from apps.mobile_translation.engines import EngineConfig, Engines
    from apps.mobile_translation.filemode import translate_file
    from apps.mobile_translation.tts.espeak_engine import EspeakSynthesizer

    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="edgewise_translate_demo_"))
    out.mkdir(parents=True, exist_ok=True)
    speech = EspeakSynthesizer(VOICE, rate_wpm=150).synthesize(sentence)
    pause = np.zeros(int(0.5 * speech.sample_rate), np.float32)
    wav_in = write_audio(out / "input_en.wav", np.concatenate([pause, speech.audio, pause]), speech.sample_rate)
    with Engines(EngineConfig(src="en", tgt="es")) as engines:
        res = translate_file(wav_in, out, engines)
    print(f"spoken (eSpeak NG, {speech.duration_s:.1f} s): {sentence}")
    print(f"recognised (PocketSphinx):  {res.transcript}")
    print(f"translated (Apertium):      {res.translation}")
    print(f"processed {res.audio_s:.1f} s of audio in {res.timings['total_s']:.2f} s (RTF {res.timings['rtf']:.2f})")
    print(f"input WAV: {wav_in}")
    for kind, path in res.outputs.items():
        print(f"{kind:>10}: {path}")
    return res.to_dict()


if __name__ == "__main__":
    demo(sys.argv[1] if len(sys.argv) > 1 else None)
