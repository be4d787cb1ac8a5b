"""Initialisers of flax that PyTorch lacks."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["lecun_normal_"]


@torch.no_grad()
def lecun_normal_(tensor: torch.Tensor) -> torch.Tensor:
    """flax's ``lecun_normal``: variance 1 / fan_in, truncated at two standard deviations.

    The divisor is the standard deviation of a unit normal truncated to [-2, 2], so the
    truncated draw has exactly the target variance. ``fan_in`` is everything but dim 0.
    """
    fan_in = tensor[0].numel()
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
    return nn.init.trunc_normal_(tensor, std=std, a=-2.0 * std, b=2.0 * std)
