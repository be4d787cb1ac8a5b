"""Model classes, the ``features_only`` backbones over them, and the tables of registered
architectures (:mod:`vitzoo.models.archs`)."""

from __future__ import annotations

from ..config import ViTConfig
from .deit import DistilledVisionTransformer
from .feature_hooks import FeatureHookNet
from .feature_info import FeatureInfo
from .features import FeatureGetterNet
from .vision_transformer import VisionTransformer, init_submodules

__all__ = ["DistilledVisionTransformer", "FeatureGetterNet", "FeatureHookNet", "FeatureInfo",
           "VisionTransformer", "build_model", "init_submodules", "model_class"]


def model_class(cfg: ViTConfig) -> type[VisionTransformer]:
    """The class a config describes: DeiT's distilled model or the plain ViT."""
    return DistilledVisionTransformer if cfg.distilled else VisionTransformer


def build_model(cfg: ViTConfig,
                model_cls: type[VisionTransformer] | None = None) -> VisionTransformer:
    """Build ``cfg`` as ``model_cls`` (default: the class the config describes)."""
    return (model_cls or model_class(cfg))(cfg)
