"""Every exception and warning class vitzoo raises, in one place.

Errors a user can cause and fix derive from :class:`VitzooError`; where a standard exception
fits as well (``ValueError``, ``KeyError``, ``OSError`` ...) it is a second base, so
``except ValueError`` code written against other libraries keeps working. This module imports
nothing, so every other module (the standalone layers included) may raise these.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "ConfigError",
    "DatasetError",
    "DownloadError",
    "DuplicateModelError",
    "ExportError",
    "FeatureIndexError",
    "ImageInputError",
    "ImageSizeError",
    "MissingDependencyError",
    "NetworkError",
    "NonFiniteWeightsWarning",
    "OfflineError",
    "TrainingInterrupted",
    "UnknownModelError",
    "UnknownOverrideError",
    "UnknownTagError",
    "UnsupportedOptionError",
    "VerificationError",
    "VitzooError",
    "ZeroHeadWarning",
]


class VitzooError(Exception):
    """Base class of every error vitzoo raises for user input."""


# -- configuration and names ----------------------------------------------------------------------
class ConfigError(VitzooError, ValueError):
    """A model or training configuration value is invalid."""


class UnknownOverrideError(ConfigError, TypeError):
    """A configuration override names a field that does not exist."""


class UnsupportedOptionError(ConfigError, NotImplementedError):
    """An option of timm's API (an augmentation, a feature class, a crop mode) that vitzoo
    does not implement; the message says what to use instead."""


class FeatureIndexError(ConfigError, IndexError):
    """``out_indices`` (or block indices) name a block the model does not have."""


class ImageSizeError(VitzooError, ValueError):
    """An input image does not have the size or channel count the model was built for."""


class DuplicateModelError(VitzooError, ValueError):
    """A model name is registered twice."""


class _KeyLookupError(VitzooError, KeyError):
    # KeyError's str() is the repr of its argument; show the message as written instead.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownModelError(_KeyLookupError):
    """A model name is neither a registered architecture nor an alias."""


class UnknownTagError(_KeyLookupError):
    """A pretrained tag is not known for the architecture."""


# -- checkpoints ----------------------------------------------------------------------------------
class CheckpointError(VitzooError, ValueError):
    """A checkpoint file is missing, unreadable, corrupt or not a state dict."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's keys or shapes do not fit the model."""


class VerificationError(VitzooError, AssertionError):
    """A converted model does not reproduce the original framework's outputs, or an exported
    file (ONNX) does not reproduce the eager model's."""


# -- export and optional dependencies -------------------------------------------------------------
class ExportError(VitzooError, RuntimeError):
    """``torch.export`` or the ONNX exporter could not export the model; nothing was written."""


class MissingDependencyError(VitzooError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it
    (``pip install "vitzoo[export]"``)."""


# -- downloads and caches -------------------------------------------------------------------------
class DownloadError(VitzooError, OSError):
    """A download failed or gave a file whose checksum is wrong; nothing was cached."""


class OfflineError(VitzooError, FileNotFoundError):
    """Weights are needed, not cached, and the network may not be used."""


class NetworkError(DownloadError):
    """A server could not be reached: its name does not resolve, or the connection is refused
    or times out. Found before any retry; the message says how to work offline, and
    ``unreachable`` names the host and the reason. Nothing was cached."""

    def __init__(self, message: str, unreachable: str = "") -> None:
        super().__init__(message)
        self.unreachable = unreachable


# -- data and training ----------------------------------------------------------------------------
class DatasetError(VitzooError, ValueError):
    """A dataset's files are missing, corrupt, unsafe or not in the expected format."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a fine-tuning run after its state was saved; ``--resume`` continues it.

    A ``KeyboardInterrupt``, so code that stops on Ctrl-C still does.

    Attributes:
        step: the last completed optimizer step (the one saved).
        output_dir: the run's directory.
    """

    def __init__(self, step: int, output_dir: object) -> None:
        super().__init__(f"interrupted at step {step}; the run was saved in {output_dir}")
        self.step = step
        self.output_dir = output_dir


# -- warnings -------------------------------------------------------------------------------------
class ZeroHeadWarning(UserWarning):
    """A checkpoint's classifier is all zeros, so its logits carry no information."""


class NonFiniteWeightsWarning(UserWarning):
    """A checkpoint's weights hold NaN or infinite values (they load; the outputs will not be
    finite). The message names the tensors."""


class ImageInputError(VitzooError, TypeError):
    """A model input is not a floating-point tensor on the weights' device: an integer or bool
    image (convert it to float and normalise it), or a tensor on another device."""
