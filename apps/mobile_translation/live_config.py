"""Configuration and small parts of the live loop: devices, the pending-transcript handle."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from apps.mobile_translation.endpoint import EndpointConfig
from apps.mobile_translation.engines import EngineConfig
from sdk.errors import AudioDeviceError

LIVE_SILENCE_MS = 416


class LiveConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    engines: EngineConfig = Field(default_factory=EngineConfig)
    # 416 ms of silence ends a live utterance (file mode keeps 480): the shortest that cut no
    # phrase of 14 LJ Speech recordings kept apart from the live benchmark's (384 ms cut two)
    endpoint: EndpointConfig = Field(default_factory=lambda: EndpointConfig(min_silence_ms=LIVE_SILENCE_MS))
    input_device: int | str | None = None
    output_device: int | str | None = None
    buffer_s: float = Field(10.0, gt=0, description="microphone ring buffer (drop-oldest beyond it)")
    max_backlog: int = Field(2, ge=1, description="utterances allowed to wait for the worker; older ones dropped")
    speak: bool = Field(True, description="synthesize and play the translation")
    gate_tail_ms: int = Field(300, ge=0, description="the mic stays muted this long after playback ends")
    reopen_initial_s: float = Field(0.5, gt=0)
    reopen_max_s: float = Field(8.0, gt=0)
    max_reopen_attempts: int | None = Field(None, ge=0, description="give up after this many failures in a row")
    streaming_asr: bool = Field(True, description="recognise while the speaker talks when the recogniser "
                                "supports it (PocketSphinx; Whisper re-decodes with LocalAgreement-2 partials), "
                                "so little is left to do at the end of speech")
    warm_up: bool = Field(True, description="run the recogniser once on silence and start the "
                          "translator (Apertium's persistent pipeline) at start")
    decode_on_pause: bool = Field(True, description="Whisper: also start the final decode as soon as the speaker "
                                  "pauses (cancelling a stale partial), so the text is ready about when the "
                                  "end-pointer's silence has passed; a decode that did not hear all of the "
                                  "utterance is never the final text (figures in the app README)")


def _default_source(sample_rate: int, block_size: int, device, buffer_s: float):
    from sdk.pipeline import MicrophoneSource

    return MicrophoneSource(sample_rate=sample_rate, block_size=block_size, device=device, buffer_s=buffer_s)


def _default_sink(sample_rate: int, device):
    from sdk.pipeline import SpeakerSink

    return SpeakerSink(sample_rate=sample_rate, device=device, buffer_s=30.0)


def _device_rate(device) -> int | None:
    try:
        from sdk.pipeline import list_audio_devices

        devs = list_audio_devices()
    except AudioDeviceError:
        return None
    for d in devs:
        if (device is None and d["default_input"]) or device in (d["index"], d["name"]):
            return int(d["default_samplerate"])
    return None


class _Pending:
    """A transcript finished when the worker calls it; ``cancel()`` if the utterance is dropped."""

    def __init__(self, stream, speech_end_s: float):
        self.stream, self.speech_end_s = stream, speech_end_s

    def __call__(self):
        return self.stream.finish(speech_end_s=self.speech_end_s)

    def cancel(self) -> None:
        self.stream.cancel()
