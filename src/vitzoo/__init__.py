"""vitzoo: Vision Transformers for PyTorch with the numerics of the original releases."""

from __future__ import annotations

from . import layers
from ._version import __version__
from .config import SIZES, ViTConfig
from .convert import convert_checkpoint
from .data.pipeline import create_transform, resolve_data_config, resolve_model_data_config
from .errors import (
    CheckpointError,
    CheckpointMismatchError,
    ConfigError,
    DatasetError,
    DownloadError,
    DuplicateModelError,
    ExportError,
    FeatureIndexError,
    ImageInputError,
    ImageSizeError,
    MissingDependencyError,
    NetworkError,
    NonFiniteWeightsWarning,
    OfflineError,
    TrainingInterrupted,
    UnknownModelError,
    UnknownOverrideError,
    UnknownTagError,
    UnsupportedOptionError,
    VerificationError,
    VitzooError,
    ZeroHeadWarning,
)
from .explain import attention_rollout, class_token_map
from .export import OnnxExport, export_onnx, export_program
from .factory import create_model, load_model
from .hub import push_to_hub, save_pretrained
from .info import ModelInfo, model_info
from .io import save_model
from .loading import LoadReport, load_checkpoint
from .models import (
    DistilledVisionTransformer,
    FeatureGetterNet,
    FeatureHookNet,
    FeatureInfo,
    VisionTransformer,
    build_model,
)
from .optimize import OptimizeReport, optimize, quantize_int8
from .pretrained import PretrainedCfg, PretrainedEntry
from .registry import (
    get_pretrained_cfg,
    get_pretrained_cfg_value,
    is_model,
    list_aliases,
    list_models,
    list_pretrained,
    register_alias,
    register_config,
    register_model,
)

__all__ = [
    "SIZES",
    "CheckpointError",
    "CheckpointMismatchError",
    "ConfigError",
    "DatasetError",
    "DistilledVisionTransformer",
    "DownloadError",
    "DuplicateModelError",
    "ExportError",
    "FeatureGetterNet",
    "FeatureHookNet",
    "FeatureIndexError",
    "FeatureInfo",
    "ImageSizeError",
    "LoadReport",
    "MissingDependencyError",
    "ModelInfo",
    "NetworkError",
    "OfflineError",
    "OnnxExport",
    "OptimizeReport",
    "PretrainedCfg",
    "PretrainedEntry",
    "TrainingInterrupted",
    "UnknownModelError",
    "UnknownOverrideError",
    "UnknownTagError",
    "UnsupportedOptionError",
    "VerificationError",
    "ViTConfig",
    "VisionTransformer",
    "VitzooError",
    "ZeroHeadWarning",
    "ImageInputError",
    "NonFiniteWeightsWarning",
    "__version__",
    "attention_rollout",
    "build_model",
    "class_token_map",
    "convert_checkpoint",
    "create_model",
    "create_transform",
    "export_onnx",
    "export_program",
    "get_pretrained_cfg",
    "get_pretrained_cfg_value",
    "is_model",
    "layers",
    "list_aliases",
    "list_models",
    "list_pretrained",
    "load_checkpoint",
    "load_model",
    "model_info",
    "optimize",
    "push_to_hub",
    "quantize_int8",
    "register_alias",
    "register_config",
    "register_model",
    "resolve_data_config",
    "resolve_model_data_config",
    "save_model",
    "save_pretrained",
]
