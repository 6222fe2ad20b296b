"""Pipelines: stages run one item at a time (:class:`Pipeline`) or live in threads with
bounded queues (:class:`StreamingPipeline`), plus sources and sinks for images, video,
cameras, WAV files, microphone and speaker.

sounddevice (PortAudio) is imported only when a microphone or speaker is opened.
"""
from sdk.pipeline.audio_io import MicrophoneSource, SpeakerSink, import_sounddevice, list_audio_devices
from sdk.pipeline.items import AudioBlock, Frame
from sdk.pipeline.pipeline import Pipeline
from sdk.pipeline.sinks import JsonlSink, VideoWriterSink, WavSink
from sdk.pipeline.sources import CameraSource, ImageFolderSource, VideoSource, WavSource
from sdk.pipeline.stage import Stage
from sdk.pipeline.streaming import StreamingPipeline, StreamStats
from sdk.pipeline.wavfile import WavInfo, WavReader, read_wav, write_wav

__all__ = [
    "Stage", "Pipeline", "StreamingPipeline", "StreamStats", "Frame", "AudioBlock",
    "ImageFolderSource", "VideoSource", "CameraSource", "WavSource", "MicrophoneSource",
    "VideoWriterSink", "WavSink", "SpeakerSink", "JsonlSink",
    "list_audio_devices", "import_sounddevice", "read_wav", "write_wav", "WavReader", "WavInfo",
]
