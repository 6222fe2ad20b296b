"""Edgewise: on-device AI on ONNX Runtime.

Subpackages (import them directly; ``import sdk`` stays light):

- :mod:`sdk.runtime`    device discovery, execution providers, the :class:`~sdk.runtime.Engine`
- :mod:`sdk.bundle`     model bundles (ONNX + manifest + hashes) and the model store
- :mod:`sdk.preprocess` image, medical and audio preprocessing as serialisable specs
- :mod:`sdk.pipeline`   stages, streaming pipelines, sources and sinks
- :mod:`sdk.detect`     detections (the one result type), output adapters, NMS, IoU, matching, F1
- :mod:`sdk.bench`      latency, memory, size and energy measurements
- :mod:`sdk.compress`   quantization, pruning, distillation and the accuracy-budgeted search
- :mod:`sdk.errors`     the error hierarchy
- :mod:`sdk.progress`   progress bars shown only when asked for and on a terminal
- :mod:`sdk.closing`    ``Closing``, the base of objects released by ``close()`` (``with obj:``)
"""
from sdk import errors
from sdk._log import logger
from sdk.errors import EdgewiseError

__version__ = "0.1.0"
#: the SDK's one logger (``logging.getLogger("edgewise")``); apps log through it, no handlers set
__all__ = ["__version__", "errors", "EdgewiseError", "logger"]
