"""Speech synthesis with eSpeak NG, through ctypes on the library that ``espeakng-loader`` ships.

No system package is needed: the ``espeakng-loader`` wheel carries ``libespeak-ng`` and its
voice data (about 100 languages). The library keeps global state, so one process holds
one initialised instance and every call goes through a module-level lock.

Needs: ``pip install 'edgewise[speech]'`` (espeakng-loader).
"""
from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass

import numpy as np

from sdk.closing import Closing
from sdk.errors import DependencyMissingError, InferenceError, require

__all__ = ["EspeakSynthesizer", "Speech"]

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH = 1, 2, 3
_EE_OK = 0

# int callback(short *wav, int numsamples, espeak_EVENT *events)
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.RLock()
_state: dict = {}  # lib, sample_rate, callback (kept alive), chunks (current synthesis buffer)


@dataclass(frozen=True)
class Speech:
    """Synthesized audio: mono float32 in [-1, 1] at ``sample_rate`` Hz."""

    audio: np.ndarray
    sample_rate: int
    seconds_to_synthesize: float

    @property
    def duration_s(self) -> float:
        return len(self.audio) / float(self.sample_rate)


def _library():
    """Load and initialise libespeak-ng once per process (call with ``_lock`` held)."""
    if "lib" in _state:
        return _state["lib"]
    loader = require("espeakng_loader", "speech", "speech synthesis with eSpeak NG")
    try:
        lib = ctypes.CDLL(str(loader.get_library_path()))
    except OSError as exc:
        raise DependencyMissingError(
            f"the eSpeak NG library shipped by espeakng-loader could not be loaded ({exc}); "
            "reinstall it with `pip install --force-reinstall espeakng-loader`") from exc
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    data_path = str(loader.get_data_path()).encode()
    # espeak_Initialize wants the folder that *contains* espeak-ng-data.
    parent = data_path.rsplit(b"/espeak-ng-data", 1)[0] if data_path.endswith(b"espeak-ng-data") else data_path
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, parent, 0)
    if rate <= 0:
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
    if rate <= 0:
        raise DependencyMissingError(
            f"eSpeak NG failed to initialise with data at {data_path.decode()} (returned {rate}); "
            "reinstall espeakng-loader")
    chunks: list[np.ndarray] = []

    def _on_audio(wav, numsamples, _events):
        if numsamples > 0 and wav:
            chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0  # 0 = continue synthesis

    callback = _SYNTH_CALLBACK(_on_audio)
    lib.espeak_SetSynthCallback(callback)
    _state.update(lib=lib, sample_rate=int(rate), callback=callback, chunks=chunks, voice=None)
    return lib


class EspeakSynthesizer(Closing):
    """Text → speech in the language ``lang`` (an eSpeak NG voice name: "en", "es", "fr", "en-us"...).

    >>> tts = EspeakSynthesizer("es"); speech = tts.synthesize("Hola")
    """

    name = "espeak"

    def __init__(self, lang: str = "en", rate_wpm: int = 175, pitch: int = 50, volume: int = 100):
        if not 80 <= rate_wpm <= 450:
            raise ValueError(f"rate_wpm must be in [80, 450], got {rate_wpm}")
        self.lang, self.rate_wpm, self.pitch, self.volume = lang, int(rate_wpm), int(pitch), int(volume)
        with _lock:
            _library()
            self._select_voice()

    @property
    def sample_rate(self) -> int:
        return _state["sample_rate"]

    def _select_voice(self) -> None:
        lib = _state["lib"]
        if _state.get("voice") != self.lang:
            if lib.espeak_SetVoiceByName(self.lang.encode()) != _EE_OK:
                raise ValueError(f"eSpeak NG has no voice for language {self.lang!r}; "
                                 "expected a code such as 'en', 'es', 'fr', 'de', 'pt'")
            _state["voice"] = self.lang
        lib.espeak_SetParameter(_RATE, self.rate_wpm, 0)
        lib.espeak_SetParameter(_PITCH, self.pitch, 0)
        lib.espeak_SetParameter(_VOLUME, self.volume, 0)

    def synthesize(self, text: str) -> Speech:
        """Synthesize ``text``; returns float32 mono audio (empty for empty text)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        t0 = time.perf_counter()
        if not text.strip():
            return Speech(np.zeros(0, np.float32), self.sample_rate, 0.0)
        data = text.encode("utf-8") + b"\0"
        with _lock:
            self._select_voice()
            lib, chunks = _state["lib"], _state["chunks"]
            chunks.clear()
            buf = ctypes.create_string_buffer(data)
            err = lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            lib.espeak_Synchronize()
            if err != _EE_OK:
                raise InferenceError(f"eSpeak NG synthesis failed with error code {err} for {text[:40]!r}")
            pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
            chunks.clear()
        audio = (pcm.astype(np.float32) / 32768.0).astype(np.float32)
        return Speech(audio, self.sample_rate, time.perf_counter() - t0)

    def close(self) -> None:  # the library is shared by the process; nothing per-instance to free
        pass
