"""Adapting a 3-channel input convolution to another number of input channels (timm's rule)."""

from __future__ import annotations

import math

import torch

__all__ = ["adapt_input_conv"]


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """``(O, 3, kh, kw)`` -> ``(O, in_chans, kh, kw)``.

    One channel: the sum over the RGB kernels (a grey image then gives the response of the same
    grey RGB image). Other counts: the RGB kernels repeated cyclically and scaled by
    ``3 / in_chans``, so the kernels' total weight stays about the same (exactly for multiples
    of 3 channels, where a constant image keeps its response).

    Raises:
        ValueError: the weight does not have 3 input channels.
    """
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise ValueError(f"only 3-channel kernels can be adapted, got shape {tuple(weight.shape)}")
    if in_chans == 3:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_chans / 3)
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (3 / in_chans)
