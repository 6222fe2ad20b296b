"""Latency of live translation: end of speech → translated text, and → first synthesized sample.

A ~3-second English utterance (eSpeak NG, or a real LJSpeech recording with --real) with
silence around it is played in real time through ``sdk.pipeline.WavSource(realtime=True)``
into the real live loop (silero VAD → end-pointing → ASR → MT → TTS); the "speaker" only
records when the first synthesized sample is ready. End of speech is the end of the last
speech chunk the end-pointer saw; the end-pointer itself waits ``min_silence_ms`` before it
can decide the utterance is over, which is part of the latency and printed apart.

    python benchmarks/translation_latency.py [--runs 3] [--asr pocketsphinx|whisper-onnx] [--mt apertium|marian-onnx]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("EDGEWISE_SHARED", REPO.parent / "shared"))
SENTENCE = "The doctor will see you in ten minutes, please wait here."


class FirstSampleSink:
    def __init__(self, sample_rate, device=None):
        self.sample_rate, self.first_write = sample_rate, None

    def open(self):
        return self

    def write(self, audio):
        self.first_write = self.first_write or time.monotonic()

    def close(self):
        pass


def make_input(real: bool, folder: Path) -> tuple[Path, float]:
    from apps.mobile_translation.audio_io import read_audio_16k, write_audio
    from apps.mobile_translation.tts.espeak_engine import EspeakSynthesizer

    if real:
        audio, _ = read_audio_16k(SHARED / "data" / "speech" / "ljspeech" / "LJ001-0007.wav")
        speech = audio[: int(3.0 * 16000)] if len(audio) > 48000 else audio
    else:
        sp = EspeakSynthesizer("en-us+klatt4", rate_wpm=185).synthesize(SENTENCE)
        from apps.mobile_translation.audio_io import to_16k

        speech = to_16k(sp.audio, sp.sample_rate)
    sil = np.zeros(8000, np.float32)
    path = write_audio(folder / "utterance.wav", np.concatenate([sil, speech, sil, sil, sil, sil]), 16000)
    return path, len(speech) / 16000


def run_once(path: Path, args, engines) -> dict:
    from apps.mobile_translation.engines import EngineConfig
    from apps.mobile_translation.live import LiveConfig, LiveTranslator
    from sdk.pipeline import WavSource

    cfg = LiveConfig(engines=EngineConfig(asr=args.asr, mt=args.mt, num_beams=args.beams, quantized=args.int8),
                     speak=True, max_reopen_attempts=0)
    sinks, events = [], []

    def sink(rate, device):
        sinks.append(FirstSampleSink(rate))
        return sinks[-1]

    def source(rate, block, device, buffer_s):
        return WavSource(path, block_size=block, realtime=True)

    cpu0 = time.process_time()
    with LiveTranslator(cfg, on_event=events.append, source_factory=source, sink_factory=sink,
                        engines=engines) as lt:
        lt.start()
        end = time.monotonic() + 30
        while time.monotonic() < end and not lt.counters["translated"] and not lt.counters["empty_transcripts"]:
            time.sleep(0.01)
        time.sleep(0.2)
        lt.stop()
        st = lt.stats()
    cpu_s = time.process_time() - cpu0
    utt = next((e for e in events if e["event"] == "utterance"), None)
    return {"text": utt and utt["text"], "translation": utt and utt["translation"],
            "latency_text_s": utt and utt["latency_text_s"], "latency_audio_s": utt and utt.get("latency_audio_s"),
            "rtf": st["rtf"], "speech_s": st["speech_s"], "min_silence_s": cfg.endpoint.min_silence_ms / 1000,
            "cpu_s": round(cpu_s, 3)}


def main() -> int:
    import logging

    logging.getLogger("edgewise").setLevel(logging.ERROR)  # the WAV "device" ending is expected
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--asr", default="pocketsphinx")
    ap.add_argument("--mt", default="apertium")
    ap.add_argument("--beams", type=int, default=1)
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--real", action="store_true", help="a real LJSpeech recording instead of eSpeak NG")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        from apps.mobile_translation.engines import EngineConfig, SpeechStack

        path, speech_s = make_input(args.real, Path(tmp))
        # one engine set for all runs, as in a conversation: run 0 is the session's first
        # utterance (PocketSphinx decodes it whole), later ones are recognised while spoken
        with SpeechStack(EngineConfig(asr=args.asr, mt=args.mt, num_beams=args.beams, quantized=args.int8)) as engines:
            runs = [run_once(path, args, engines) for _ in range(args.runs)]
    warm = runs[1:] or runs
    lt = [r["latency_text_s"] for r in warm if r["latency_text_s"] is not None]
    la = [r["latency_audio_s"] for r in warm if r["latency_audio_s"] is not None]
    summary = {"engines": f"{args.asr}+{args.mt}+espeak", "utterance_s": round(speech_s, 2), "runs": runs,
               "latency_text_median_s": round(float(np.median(lt)), 3) if lt else None,
               "latency_first_audio_median_s": round(float(np.median(la)), 3) if la else None}
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    print(f"engines {summary['engines']}, utterance {speech_s:.2f} s ({'LJSpeech' if args.real else 'eSpeak NG'})")
    for i, r in enumerate(runs):
        print(f"  run {i}: end of speech -> text {r['latency_text_s']} s, -> first sample {r['latency_audio_s']} s "
              f"(of which end-pointing silence {r['min_silence_s']} s); per-stage RTF {r['rtf']}; "
              f"CPU {r['cpu_s']} s for {r['speech_s']} s of speech")
    print(f"  heard: {runs[0]['text']!r} -> {runs[0]['translation']!r}")
    print(f"median over runs 1..: text {summary['latency_text_median_s']} s, first synthesized sample "
          f"{summary['latency_first_audio_median_s']} s (target: text within 1 s, RTF <= 0.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
