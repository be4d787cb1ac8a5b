"""Pieces of the hybrid's ResNet stem with TensorFlow's numerics: "SAME" padding and
weight-standardised convolutions.

Qiao et al., "Micro-Batch Training with Batch-Channel Normalization and Weight
Standardization" (2019); Kolesnikov et al., "Big Transfer (BiT)" (ECCV 2020). The exact
formulas are those of Google's ``vit_jax/models_resnet.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .pos_embed import is_exporting
from .weight_init import lecun_normal_

__all__ = ["MaxPool2dSame", "StdConv2dSame", "pad_same", "standardize_weight"]


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    # TF/lax "SAME": out = ceil(in / stride); the extra pixel, if any, goes after.
    out = (size + stride - 1) // stride
    total = (out - 1) * stride + kernel - size
    if torch.jit.is_scripting():
        total = max(total, 0)
    else:  # a symbolic max, so torch.export keeps the padding a function of the size
        # (the ignore: sym_max is unannotated in torch; TorchScript needs it to end the line)
        total = torch.sym_max(total, 0)  # type: ignore[no-untyped-call]
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` as TensorFlow's "SAME" does for this kernel and stride."""
    top, bottom = _same_padding(x.shape[-2], kernel, stride)
    left, right = _same_padding(x.shape[-1], kernel, stride)
    if is_exporting() or top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), value=value)
    return x


# The padding depends on the input's size: one node under torch.fx tracing.
torch.fx.wrap("pad_same")


def standardize_weight(weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``(w - mean) / (std + eps)`` per output channel, population std (Google's formula).

    The epsilon is added to the standard deviation, not inside the square root.
    """
    flat = weight.flatten(1)  # (O, I * kh * kw)
    centred = flat - flat.mean(dim=1, keepdim=True)
    std = centred.std(dim=1, keepdim=True, unbiased=False)
    return (centred / (std + eps)).view_as(weight)


class StdConv2dSame(nn.Conv2d):
    """A bias-free convolution with weight standardisation at every forward and "SAME" padding.

    The parameter holds the raw kernel, as Google's checkpoints do.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size.
        stride: stride.
        eps: added to the per-channel standard deviation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, eps: float = 1e-5) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         bias=False)
        self.eps = eps

    @torch.no_grad()
    def init_weights(self, mode: str) -> None:
        """``"jax"``: LeCun-normal (Google); ``"timm"``: Kaiming-normal, fan-out."""
        if mode == "jax":
            lecun_normal_(self.weight)
        else:
            nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, standardize_weight(self.weight, self.eps), None, self.stride)


class MaxPool2dSame(nn.Module):
    """Max pooling with TensorFlow's "SAME" padding (the padding never wins the max)."""

    def __init__(self, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size, self.stride, value=-math.inf)
        return F.max_pool2d(x, self.kernel_size, self.stride)
