"""Pipelines: stages run one item at a time (:class:`Pipeline`) or live, one worker per stage
with a bounded queue and drop policy on each edge and a feedback :class:`Gate`
(:class:`StreamingPipeline`), plus sources and sinks for images, video, cameras, WAV files,
microphone and speaker.

sounddevice (PortAudio) is imported only when a microphone or speaker is opened.
"""
from sdk.pipeline.edges import DROP_POLICIES
from sdk.pipeline.feedback import Gate
from sdk.pipeline.folder_walk import walk_folder
from sdk.pipeline.items import AudioBlock, Frame
from sdk.pipeline.pipeline import Pipeline
from sdk.pipeline.sinks import JsonlSink, VideoWriterSink, WavSink
from sdk.pipeline.sound_devices import MicrophoneSource, SpeakerSink, import_sounddevice, list_audio_devices
from sdk.pipeline.sources import CameraSource, ImageFolderSource, VideoSource, WavSource
from sdk.pipeline.stage import Stage
from sdk.pipeline.stream_stats import StageStats, StreamEvent, StreamStats
from sdk.pipeline.streaming import StreamingPipeline
from sdk.pipeline.wavfile import WavInfo, WavReader, read_wav, write_wav

__all__ = [
    "Stage", "Pipeline", "StreamingPipeline", "StreamStats", "StageStats", "StreamEvent", "Gate",
    "DROP_POLICIES", "Frame", "AudioBlock",
    "ImageFolderSource", "VideoSource", "CameraSource", "WavSource", "MicrophoneSource",
    "VideoWriterSink", "WavSink", "SpeakerSink", "JsonlSink",
    "list_audio_devices", "import_sounddevice", "read_wav", "write_wav", "WavReader", "WavInfo",
    "walk_folder",
]
