"""Fakes for the live loop: a microphone driven by a thread that calls the SDK's real PortAudio
callback (so the real ring buffer and status counting run), engines, a VAD and a speaker."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np

from apps.mobile_translation.asr.base import Transcript
from apps.mobile_translation.mt.base import Translation
from sdk.errors import AudioDeviceError
from sdk.pipeline import MicrophoneSource


class FakeStatus(SimpleNamespace):
    def __bool__(self):
        return any(vars(self).values())


class FakeMic(MicrophoneSource):
    """Plays ``audio`` through ``MicrophoneSource._callback`` at ``pace`` x real time.

    ``flags``: {block index: ["input_overflow", ...]}; ``die_after``: blocks before the
    stream goes inactive (device lost); ``echo``: a list the fake speaker appends to, mixed
    into the following blocks (the room's acoustic echo).
    """

    def __init__(self, audio, sample_rate=16000, block_size=512, device=None, buffer_s=10.0,
                 pace=1.0, flags=None, die_after=None, echo=None):
        super().__init__(sample_rate=sample_rate, block_size=block_size, device=device, buffer_s=buffer_s)
        self.audio, self.pace, self.flags = np.asarray(audio, np.float32), pace, flags or {}
        self.die_after, self.echo = die_after, echo
        self.delivered = 0
        self.blocked_s = 0.0   # longest time one callback took
        self.finished = False  # the producer delivered everything (or the device "died")

    def open(self):
        if self._stream is not None:
            return self
        stream = SimpleNamespace(active=True, stop=lambda: setattr(stream, "active", False),
                                 close=lambda: setattr(stream, "active", False))
        self._stream = stream
        self._closing.clear()
        threading.Thread(target=self._produce, args=(stream,), daemon=True).start()
        return self

    def _produce(self, stream):
        bs, t0 = self.block_size, time.monotonic()
        n = len(self.audio) // bs
        echo_buf = np.zeros(0, np.float32)
        for i in range(n):
            if not stream.active or (self.die_after is not None and i >= self.die_after):
                break
            block = self.audio[i * bs:(i + 1) * bs].copy()
            if self.echo:
                echo_buf = np.concatenate([echo_buf] + self.echo)
                self.echo.clear()
            if len(echo_buf):
                k = min(bs, len(echo_buf))
                block[:k] += echo_buf[:k]
                echo_buf = echo_buf[k:]
            status = FakeStatus(**{f: True for f in self.flags.get(i, [])})
            c0 = time.perf_counter()
            self._callback(block[:, None], bs, None, status)
            self.blocked_s = max(self.blocked_s, time.perf_counter() - c0)
            self.delivered += 1
            delay = t0 + (i + 1) * bs / self.sample_rate / self.pace - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        time.sleep(0.3)  # let the consumer drain the ring before the stream goes away
        stream.active = False
        self.finished = True


class LevelVAD:
    """Speech probability from the block's RMS (deterministic stand-in for silero)."""

    def __init__(self, level=0.02):
        self.level, self.calls = level, 0

    def __call__(self, chunk):
        self.calls += 1
        return 0.95 if float(np.sqrt(np.mean(np.square(chunk)))) > self.level else 0.02

    def close(self):
        pass


class SlowASR:
    name, lang = "slow", "en"

    def __init__(self, seconds=0.0):
        self.seconds, self.seen = seconds, []

    def transcribe(self, audio):
        time.sleep(self.seconds)
        # each test burst encodes its index in its amplitude: 0.1 * (k + 1)
        k = int(round(float(np.abs(audio).max()) * 10)) - 1
        self.seen.append(k)
        return Transcript(f"utterance {k}", [], len(audio) / 16000, self.seconds)

    def close(self):
        pass


class EchoMT:
    name, src, tgt = "echo", "en", "es"

    def translate(self, text):
        return Translation(text, text.replace("utterance", "enunciado"), 0.0)

    def close(self):
        pass


class NoiseTTS:
    """'Speech' that the fake VAD hears as speech: 0.6 s of noise at 16 kHz."""

    name, sample_rate = "noise", 16000

    def synthesize(self, text):
        a = (np.random.default_rng(0).standard_normal(9600) * 0.2).astype(np.float32)
        return SimpleNamespace(audio=a, sample_rate=16000, seconds_to_synthesize=0.0)

    def close(self):
        pass


class FakeSink:
    def __init__(self, sample_rate, echo=None):
        self.sample_rate, self.echo, self.written = sample_rate, echo, []
        self.underruns, self.status_counts = 0, {"output_underflow": 1}

    def open(self):
        return self

    def write(self, audio):
        self.written.append(np.asarray(audio))
        if self.echo is not None:
            self.echo.append(np.asarray(audio, np.float32) * 0.5)

    def close(self):
        pass


def fake_engines(asr=None, tts=None):
    return SimpleNamespace(asr=asr or SlowASR(), mt=EchoMT(), tts=tts or NoiseTTS(), close=lambda: None)


def bursts(n, on_s=0.4, off_s=0.6, sr=16000, lead_s=0.3):
    """n bursts of noise, burst k with peak amplitude 0.1 * (k + 1), separated by silence."""
    rng = np.random.default_rng(1)
    parts = [np.zeros(int(lead_s * sr), np.float32)]
    for k in range(n):
        b = rng.uniform(-1, 1, int(on_s * sr)).astype(np.float32)
        parts += [b / np.abs(b).max() * 0.1 * (k + 1), np.zeros(int(off_s * sr), np.float32)]
    return np.concatenate(parts)


def failing_factory(error: str):
    def factory(*a, **kw):
        raise AudioDeviceError(error)
    return factory


def wait_until(cond, timeout: float = 10.0, poll: float = 0.01) -> bool:
    """Poll ``cond()`` every ``poll`` seconds until it holds or ``timeout`` passes; its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        time.sleep(poll)
    return cond()
