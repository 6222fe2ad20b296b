"""Mobile translation: offline speech-to-speech translation on the device.

Microphone → voice activity (silero VAD through ``sdk.runtime``) → end-pointing → speech
recognition → translation → speech synthesis → speaker, and a file mode (WAV in →
JSON/SRT/WAV out). Engines sit behind small interfaces and are picked by config
(:mod:`apps.mobile_translation.engines`).
"""
from apps.mobile_translation.asr.base import Recognizer, Segment, Transcript
from apps.mobile_translation.mt.base import Translation, Translator

__all__ = ["Recognizer", "Segment", "Transcript", "Translator", "Translation"]
