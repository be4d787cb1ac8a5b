"""DeiT with the distillation token.

Touvron et al., "Training data-efficient image transformers & distillation through
attention" (ICML 2021).
"""

# No `from __future__ import annotations` (see vision_transformer.py).

import torch
from torch import nn

from ..config import ViTConfig
from ..errors import ConfigError
from .vision_transformer import VisionTransformer

__all__ = ["DistilledVisionTransformer"]


class DistilledVisionTransformer(VisionTransformer):
    """A ViT with a distillation token after the class token and a second head ``head_dist``.

    :meth:`forward` returns the mean of the two heads' logits (DeiT's inference rule) in
    training and evaluation alike; :meth:`forward_distill` returns both, for the distillation
    loss. After ``set_distilled_training(True)`` (timm's switch), ``forward`` in training mode
    returns the pair ``(class_logits, distill_logits)`` instead, as timm's DeiT does.

    Args:
        cfg: the architecture, with ``distilled=True``.
    """



    def __init__(self, cfg: ViTConfig) -> None:
        if not cfg.distilled:
            raise ConfigError("DistilledVisionTransformer needs a config with distilled=True")
        super().__init__(cfg)
        self.distilled_training = False

    def set_distilled_training(self, enable: bool = True) -> None:
        """Make ``forward`` return both logits in training mode (timm's DeiT switch)."""
        self.distilled_training = enable

    def get_classifier(self) -> tuple[nn.Module, nn.Module]:  # type: ignore[override]
        """Both heads ``(head, head_dist)``, as timm's DeiT returns them."""
        return self.head, self.head_dist

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean logits; the pair ``(class_logits, distill_logits)`` in training mode after
        ``set_distilled_training(True)`` (not in TorchScript, whose forward returns one type)."""
        if self.distilled_training and self.training and not torch.jit.is_scripting():
            return self.forward_distill(x)  # type: ignore[return-value]
        return self.forward_head(self.forward_features(x))

    def _prune_head(self) -> None:
        self.reset_classifier(0)  # the two tokens keep their pooling

    def _replace_heads(self, num_classes: int) -> None:
        self.head = self._new_head(num_classes)
        self.head_dist = self._new_head(num_classes)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Mean of the class-token and distillation-token logits (or of their features)."""
        x_cls, x_dist = self.head_drop(x[:, 0]), self.head_drop(x[:, 1])
        if pre_logits:
            features: torch.Tensor = (x_cls + x_dist) / 2
            return features
        logits: torch.Tensor = (self.head(x_cls) + self.head_dist(x_dist)) / 2
        return logits

    def forward_distill(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both logits ``(class_logits, distill_logits)`` for images ``x``, for training."""
        x = self.forward_features(x)
        x_cls, x_dist = self.head_drop(x[:, 0]), self.head_drop(x[:, 1])
        return self.head(x_cls), self.head_dist(x_dist)
