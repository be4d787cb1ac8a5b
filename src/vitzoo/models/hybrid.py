"""The ResNet stem of Google's R+ViT hybrids, with Google's exact numerics.

Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021), §3.1 and Appendix D.4;
``vit_jax/models_resnet.py``. Post-activation bottlenecks (ResNet v1.5: the stride is on the
3x3 conv) with weight-standardised convolutions, GroupNorm(32, eps=1e-6) and TF "SAME"
padding. Parameter names follow timm, so timm's hub weights load unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ..layers.std_conv import MaxPool2dSame, StdConv2dSame
from ..layers.weight_init import lecun_normal_

__all__ = ["ResNetV2", "build_resnet_backbone"]


def _group_norm(channels: int, eps: float) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=eps)


def _stem_layers(in_chans: int, width: int, eps: float) -> OrderedDict[str, nn.Module]:
    """7x7/2 StdConv, GroupNorm, ReLU, 3x3/2 max-pool: a /4 map with ``width`` channels."""
    return OrderedDict([
        ("conv", StdConv2dSame(in_chans, width, 7, stride=2)),
        ("norm", _group_norm(width, eps)),
        ("act", nn.ReLU()),
        ("pool", MaxPool2dSame(3, 2)),
    ])


class _Downsample(nn.Module):
    """The projection shortcut: 1x1 StdConv with the unit's stride, then GroupNorm."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, eps: float) -> None:
        super().__init__()
        self.conv = StdConv2dSame(in_chs, out_chs, 1, stride=stride)
        self.norm = _group_norm(out_chs, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class _Bottleneck(nn.Module):
    """Google's ``ResidualUnit``: relu(shortcut + gn3(conv3(relu(gn2(conv2(relu(gn1(conv1)))))))."""

    def __init__(self, in_chs: int, features: int, stride: int, eps: float) -> None:
        super().__init__()
        out_chs = 4 * features
        needs_projection = in_chs != out_chs or stride != 1
        self.downsample = _Downsample(in_chs, out_chs, stride, eps) if needs_projection else None
        self.conv1 = StdConv2dSame(in_chs, features, 1)
        self.norm1 = _group_norm(features, eps)
        self.conv2 = StdConv2dSame(features, features, 3, stride=stride)
        self.norm2 = _group_norm(features, eps)
        self.conv3 = StdConv2dSame(features, out_chs, 1)
        self.norm3 = _group_norm(out_chs, eps)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.act(self.norm1(self.conv1(x)))
        y = self.act(self.norm2(self.conv2(y)))
        y = self.norm3(self.conv3(y))
        return self.act(shortcut + y)


class _Stage(nn.Module):
    def __init__(self, in_chs: int, features: int, depth: int, stride: int, eps: float) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[
            _Bottleneck(in_chs if i == 0 else 4 * features, features, stride if i == 0 else 1, eps)
            for i in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def _init_resnet(module: nn.Module, mode: str) -> None:
    """Google: LeCun-normal kernels; timm: Kaiming-normal (fan-out). Both zero ``norm3``'s scale
    so every unit starts as its shortcut."""
    for m in module.modules():
        if isinstance(m, StdConv2dSame):
            if mode == "jax":
                lecun_normal_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.GroupNorm):
            m.reset_parameters()
    for m in module.modules():
        if isinstance(m, _Bottleneck):
            nn.init.zeros_(m.norm3.weight)


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
        self.stem = nn.Sequential(_stem_layers(in_chans, width, norm_eps))
        stages, in_chs = [], width
        for s, depth in enumerate(layers):
            features = width * 2 ** s
            stages.append(_Stage(in_chs, features, depth, 1 if s == 0 else 2, norm_eps))
            in_chs = 4 * features
        self.stages = nn.Sequential(*stages)
        self.out_channels = in_chs

    @torch.no_grad()
    def init_weights(self, mode: str) -> None:
        _init_resnet(self, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


class _StemOnly(nn.Sequential):
    """The stem-only backbone of ``R+ViT-Ti/16`` (timm's keys have no ``stem.`` level)."""

    @torch.no_grad()
    def init_weights(self, mode: str) -> None:
        _init_resnet(self, mode)


def build_resnet_backbone(layers: Sequence[int], *, width: int = 64, in_chans: int = 3,
                          norm_eps: float = 1e-6) -> tuple[nn.Module, int]:
    """The hybrid backbone for ``layers`` (empty: stem only) and its output channels."""
    if not layers:
        return _StemOnly(_stem_layers(in_chans, width, norm_eps)), width
    backbone = ResNetV2(layers, width=width, in_chans=in_chans, norm_eps=norm_eps)
    return backbone, backbone.out_channels
