"""The ResNet stem of Google's R+ViT hybrids, with Google's exact numerics.

Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021), §3.1 and Appendix D.4;
``vit_jax/models_resnet.py``. The units are :mod:`vitzoo.layers.bottleneck`'s; parameter names
follow timm, so timm's hub weights load unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..layers import ResNetStage, stem_layers

__all__ = ["ResNetV2", "build_resnet_backbone"]


class ResNetV2(nn.Module):
    """The hybrid's CNN: the stem and ``len(layers)`` stages of bottleneck units.

    Stage s (0-based) has ``layers[s]`` units of ``width * 2**s`` features (output channels 4x
    that); the first unit of every stage but the first has stride 2. Output stride 16 for the R50
    hybrid's three stages, 32 for the R26's four.

    Args:
        layers: units per stage, e.g. ``(3, 4, 9)``; must not be empty (see
            :func:`build_resnet_backbone` for the stem-only hybrid).
        width: stem channels (64 times Google's width factor).
        in_chans: input channels.
        norm_eps: GroupNorm epsilon (1e-6, flax's default).
    """

    def __init__(self, layers: Sequence[int], *, width: int = 64, in_chans: int = 3,
                 norm_eps: float = 1e-6) -> None:
        super().__init__()
        if not layers:
            raise ValueError("ResNetV2 needs at least one stage; use build_resnet_backbone")
        self.stem = nn.Sequential(stem_layers(in_chans, width, norm_eps))
        stages, in_chs = [], width
        for s, depth in enumerate(layers):
            features = width * 2 ** s
            stages.append(ResNetStage(in_chs, features, depth=depth, stride=1 if s == 0 else 2,
                                      eps=norm_eps))
            in_chs = 4 * features
        self.stages = nn.Sequential(*stages)
        self.out_channels = in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.stages(self.stem(x))
        return out


def build_resnet_backbone(layers: Sequence[int], *, width: int = 64, in_chans: int = 3,
                          norm_eps: float = 1e-6) -> tuple[nn.Module, int]:
    """The hybrid backbone for ``layers`` (empty: the stem only, whose keys have no ``stem.``
    level, as in timm's ``R+ViT-Ti/16``) and its output channels."""
    if not layers:
        return nn.Sequential(stem_layers(in_chans, width, norm_eps)), width
    backbone = ResNetV2(layers, width=width, in_chans=in_chans, norm_eps=norm_eps)
    return backbone, backbone.out_channels
