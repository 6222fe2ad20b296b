"""Preprocessing: image, medical and audio operations, and their serialisable specs.

Functions work on numpy arrays (images HWC as OpenCV reads them, sizes ``(height, width)``);
the same operations exist as pydantic ops that a :class:`PreprocessSpec` lists, so a model
bundle carries its own preprocessing and an app rebuilds it with ``spec.build()``.
"""
from sdk.preprocess.audio import (
    frame_signal,
    hz_to_mel,
    load_audio,
    log_mel_spectrogram,
    mel_filterbank,
    mel_to_hz,
    resample,
    stft_power,
    whisper_input_features,
)
from sdk.preprocess.image import (
    LetterboxTransform,
    add_batch_dim,
    cast_dtype,
    clahe,
    color_convert,
    letterbox,
    normalize,
    resize,
    to_layout,
)
from sdk.preprocess.medical import invert, rescale_slope_intercept, window
from sdk.preprocess.ring import AudioRingBuffer
from sdk.preprocess.spec import (
    AddBatchDim,
    AnyOp,
    CastDtype,
    Clahe,
    ColorConvert,
    ExpectImage,
    Letterbox,
    LogMel,
    Normalize,
    Op,
    Preprocessor,
    PreprocessSpec,
    Resample,
    RescaleSlopeIntercept,
    Resize,
    ToLayout,
    Window,
)

__all__ = [
    # specs
    "PreprocessSpec", "Preprocessor", "Op", "AnyOp", "ExpectImage", "Resize", "Letterbox",
    "Normalize", "ToLayout", "ColorConvert", "Clahe", "Window", "RescaleSlopeIntercept",
    "CastDtype", "AddBatchDim", "Resample", "LogMel",
    # image
    "LetterboxTransform", "letterbox", "resize", "normalize", "to_layout", "color_convert",
    "clahe", "cast_dtype", "add_batch_dim",
    # medical
    "window", "rescale_slope_intercept", "invert",
    # audio
    "resample", "frame_signal", "log_mel_spectrogram", "mel_filterbank", "stft_power",
    "hz_to_mel", "mel_to_hz", "AudioRingBuffer", "whisper_input_features", "load_audio",
]
