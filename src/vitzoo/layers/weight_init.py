"""Initialisers of the two weight schemes: timm's and Google's (flax's defaults).

``"timm"``: truncated normal (std 0.02) Linear kernels and zero biases. ``"jax"``: flax's
Xavier-uniform kernels (each of q, k, v separately, as flax stores them), LeCun-normal
convolutions, zero biases except the MLP's N(0, 1e-6).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["INIT_MODES", "check_init_mode", "init_linear_", "lecun_normal_"]

INIT_MODES = ("timm", "jax")


def check_init_mode(mode: str) -> None:
    """Raise :class:`ConfigError` unless ``mode`` is ``"timm"`` or ``"jax"``."""
    if mode not in INIT_MODES:
        raise ConfigError(f"weight_init mode {mode!r} is not 'timm' or 'jax'")


@torch.no_grad()
def lecun_normal_(tensor: torch.Tensor) -> torch.Tensor:
    """flax's ``lecun_normal``: variance 1 / fan_in, truncated at two standard deviations.

    The divisor is the standard deviation of a unit normal truncated to [-2, 2], so the
    truncated draw has exactly the target variance. ``fan_in`` is everything but dim 0.
    """
    fan_in = tensor[0].numel()
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
    return nn.init.trunc_normal_(tensor, std=std, a=-2.0 * std, b=2.0 * std)


@torch.no_grad()
def init_linear_(linear: nn.Linear, mode: str, *, parts: int = 1,
                 jax_bias_std: float = 0.0) -> None:
    """Initialise a Linear in ``mode``.

    Args:
        linear: the layer.
        mode: ``"timm"`` (trunc-normal 0.02, zero bias) or ``"jax"`` (Xavier-uniform).
        parts: in ``"jax"`` mode, the number of row blocks initialised as separate kernels
            (3 for a fused q/k/v projection, 2 for k/v), as flax keeps them separate.
        jax_bias_std: in ``"jax"`` mode, the bias is N(0, std) (1e-6 for the MLP), else zero.
    """
    if mode == "jax":
        for block in linear.weight.chunk(parts, dim=0):
            nn.init.xavier_uniform_(block)
    else:
        nn.init.trunc_normal_(linear.weight, std=0.02)
    if linear.bias is not None:
        if mode == "jax" and jax_bias_std:
            nn.init.normal_(linear.bias, std=jax_bias_std)
        else:
            nn.init.zeros_(linear.bias)
