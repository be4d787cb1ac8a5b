"""The pieces of the hybrid's ResNet, with Google's exact numerics: the stem, the projection
shortcut, the post-activation bottleneck unit and a stage of them.

Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021), §3.1 and Appendix D.4;
``vit_jax/models_resnet.py``. ResNet v1.5 (the stride is on the 3x3 conv) with
weight-standardised convolutions, GroupNorm(32, eps=1e-6) and TF "SAME" padding. Parameter
names follow timm.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .std_conv import MaxPool2dSame, StdConv2dSame

__all__ = ["Bottleneck", "Downsample", "ResNetStage", "stem_layers"]


def _group_norm(channels: int, eps: float) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=eps)


def stem_layers(in_chans: int, width: int, eps: float = 1e-6) -> OrderedDict[str, nn.Module]:
    """7x7/2 StdConv, GroupNorm, ReLU, 3x3/2 max-pool: a /4 map with ``width`` channels."""
    return OrderedDict([
        ("conv", StdConv2dSame(in_chans, width, 7, stride=2)),
        ("norm", _group_norm(width, eps)),
        ("act", nn.ReLU()),
        ("pool", MaxPool2dSame(3, 2)),
    ])


class Downsample(nn.Module):
    """The projection shortcut: 1x1 StdConv with the unit's stride, then GroupNorm."""

    def __init__(self, in_chs: int, out_chs: int, *, stride: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.conv = StdConv2dSame(in_chs, out_chs, 1, stride=stride)
        self.norm = _group_norm(out_chs, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.norm(self.conv(x))
        return out


class Bottleneck(nn.Module):
    """Google's ``ResidualUnit``: relu(shortcut + gn3(conv3(relu(gn2(conv2(relu(gn1(conv1)))))))."""

    def __init__(self, in_chs: int, features: int, *, stride: int, eps: float = 1e-6) -> None:
        super().__init__()
        out_chs = 4 * features
        needs_projection = in_chs != out_chs or stride != 1
        self.downsample = (Downsample(in_chs, out_chs, stride=stride, eps=eps)
                           if needs_projection else None)
        self.conv1 = StdConv2dSame(in_chs, features, 1)
        self.norm1 = _group_norm(features, eps)
        self.conv2 = StdConv2dSame(features, features, 3, stride=stride)
        self.norm2 = _group_norm(features, eps)
        self.conv3 = StdConv2dSame(features, out_chs, 1)
        self.norm3 = _group_norm(out_chs, eps)
        self.act = nn.ReLU()

    @torch.no_grad()
    def init_weights(self, mode: str) -> None:
        """Zero ``norm3``'s scale (both schemes), so every unit starts as its shortcut; runs
        after the unit's own layers were initialised."""
        nn.init.zeros_(self.norm3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.act(self.norm1(self.conv1(x)))
        y = self.act(self.norm2(self.conv2(y)))
        y = self.norm3(self.conv3(y))
        out: torch.Tensor = self.act(shortcut + y)
        return out


class ResNetStage(nn.Module):
    """``depth`` bottleneck units of ``features`` (4x that out); the first has ``stride``."""

    def __init__(self, in_chs: int, features: int, *, depth: int, stride: int,
                 eps: float = 1e-6) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[
            Bottleneck(in_chs if i == 0 else 4 * features, features,
                       stride=stride if i == 0 else 1, eps=eps)
            for i in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.blocks(x)
        return out
