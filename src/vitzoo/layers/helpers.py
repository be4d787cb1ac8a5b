"""Small pieces the layers share."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

__all__ = ["layer_norm", "to_2tuple"]


def to_2tuple(value: int | Sequence[int]) -> tuple[int, int]:
    """``n -> (n, n)``; a ``(height, width)`` pair is returned as a tuple."""
    if isinstance(value, int):
        return (value, value)
    height, width = value
    return (int(height), int(width))


def layer_norm(dim: int) -> nn.LayerNorm:
    """The default norm of the layers: LayerNorm with eps 1e-6 (the ViT release's, flax's
    default), not PyTorch's 1e-5."""
    return nn.LayerNorm(dim, eps=1e-6)
