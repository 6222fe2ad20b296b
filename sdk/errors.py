"""The SDK's error hierarchy.

Bad *arguments* raise the built-in ``ValueError`` / ``TypeError`` / ``FileNotFoundError``.
Failures at run time (a model that will not load, a tampered bundle, a provider that is
not there, a dead stream) raise a subclass of :class:`EdgewiseError`, so an application can
catch everything the SDK raises on purpose with one ``except``.

Every message says what was expected, what was found, and, where there is one, the fix.
"""
from __future__ import annotations

__all__ = [
    "EdgewiseError", "ModelLoadError", "ProviderUnavailableError", "InputValidationError",
    "InferenceError", "BundleError", "IntegrityError", "UnsafePathError", "StoreError",
    "OfflineError", "PreprocessError", "DecodeError", "PipelineError", "AudioDeviceError",
    "DependencyMissingError", "CompressionError", "SignatureError", "require",
    "OutputLayoutError",
]


class EdgewiseError(Exception):
    """Base class for every error the SDK raises on purpose."""


# --- runtime -------------------------------------------------------------------------
class ModelLoadError(EdgewiseError):
    """An ONNX model could not be read or onnxruntime refused it (truncated, corrupt...)."""


class ProviderUnavailableError(EdgewiseError):
    """An execution provider was required (fallback disabled) but is not available here."""


class InputValidationError(EdgewiseError, ValueError):
    """Inputs do not match the model's signature (name, dtype, rank, fixed dims, finiteness)."""


class InferenceError(EdgewiseError):
    """onnxruntime failed while running the model, or produced non-finite output when checked."""


class OutputLayoutError(InferenceError, ValueError):
    """A model's outputs do not have the layout its decoder expects (count, shape, anchors)."""


# --- bundles and the model store ------------------------------------------------------
class BundleError(EdgewiseError):
    """A model bundle is malformed: missing manifest, invalid manifest, missing file."""


class IntegrityError(BundleError):
    """A file's SHA-256 does not match the one pinned in the manifest or catalog."""


class UnsafePathError(BundleError):
    """A path inside a bundle or model is absolute, climbs out (``..``) or goes through a symlink."""


class StoreError(EdgewiseError):
    """The model store could not provide a model (unknown name, download failed)."""


class OfflineError(StoreError):
    """The model is not in the local cache and the store is in offline mode."""


# --- data -----------------------------------------------------------------------------
class PreprocessError(EdgewiseError, ValueError):
    """Input data has the wrong shape/dtype/range for a preprocessing operation."""


class DecodeError(EdgewiseError):
    """An input file (image, DICOM, audio, video) is unreadable, truncated or refused."""


# --- pipelines and devices ------------------------------------------------------------
class PipelineError(EdgewiseError):
    """A pipeline stage failed, or a source/sink died."""


class AudioDeviceError(EdgewiseError):
    """Audio I/O is unavailable (PortAudio missing, device lost, unsupported sample rate)."""


class DependencyMissingError(EdgewiseError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


# --- compression ----------------------------------------------------------------------
class CompressionError(EdgewiseError):
    """A compression pass could not be applied to this model."""


def require(module: str, extra: str, purpose: str = ""):
    """Import an optional dependency or raise :class:`DependencyMissingError` naming the extra.

    ``sounddevice`` raises ``OSError`` when PortAudio is missing, so both are caught.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:  # OSError: a missing shared library
        what = f" for {purpose}" if purpose else ""
        raise DependencyMissingError(
            f"{module!r} is needed{what} but could not be imported ({exc}). "
            f"Run `pip install 'edgewise[{extra}]'`."
        ) from exc


class SignatureError(IntegrityError):
    """A trust policy is set and a bundle is unsigned, signed by an untrusted key, or was
    edited after signing (exit code 3, like every integrity error)."""
