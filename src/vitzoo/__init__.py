"""vitzoo: Vision Transformers for PyTorch with the numerics of the original releases."""

from __future__ import annotations

from . import layers
from ._version import __version__
from .checkpoints import convert_checkpoint
from .config import SIZES, ViTConfig
from .data.transforms import create_transform, resolve_data_config
from .errors import (
    ConfigError,
    DuplicateModelError,
    ImageSizeError,
    UnknownModelError,
    UnknownOverrideError,
    UnknownTagError,
    VitzooError,
)
from .factory import ZeroHeadWarning, create_model, load_model
from .hub import DownloadError, OfflineError, push_to_hub, save_pretrained
from .info import ModelInfo, model_info
from .io import CheckpointError, CheckpointMismatchError, LoadReport, load_checkpoint, save_model
from .models import DistilledVisionTransformer, VisionTransformer, build_model
from .pretrained import PretrainedEntry
from .registry import (
    is_model,
    list_aliases,
    list_models,
    list_pretrained,
    register_alias,
    register_model,
)

__all__ = [
    "SIZES",
    "CheckpointError",
    "CheckpointMismatchError",
    "ConfigError",
    "DistilledVisionTransformer",
    "DownloadError",
    "DuplicateModelError",
    "ImageSizeError",
    "LoadReport",
    "ModelInfo",
    "OfflineError",
    "PretrainedEntry",
    "UnknownModelError",
    "UnknownOverrideError",
    "UnknownTagError",
    "ViTConfig",
    "ZeroHeadWarning",
    "VisionTransformer",
    "VitzooError",
    "__version__",
    "build_model",
    "convert_checkpoint",
    "create_model",
    "create_transform",
    "is_model",
    "layers",
    "list_aliases",
    "list_models",
    "list_pretrained",
    "load_checkpoint",
    "load_model",
    "model_info",
    "push_to_hub",
    "register_alias",
    "register_model",
    "resolve_data_config",
    "save_model",
    "save_pretrained",
]
