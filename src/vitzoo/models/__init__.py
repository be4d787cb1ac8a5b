"""Model classes and the registered architectures."""

from __future__ import annotations

from ..config import ViTConfig
from .deit import DistilledVisionTransformer
from .vision_transformer import VisionTransformer

__all__ = ["DistilledVisionTransformer", "VisionTransformer", "build_model"]


def build_model(cfg: ViTConfig) -> VisionTransformer:
    """The model class a config describes: distilled DeiT or plain ViT."""
    if cfg.distilled:
        return DistilledVisionTransformer(cfg)
    return VisionTransformer(cfg)


from . import variants  # noqa: E402,F401  (registers the architectures)
