"""Small pieces the layers share."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

__all__ = ["is_square", "layer_norm", "patch_grid", "to_2tuple"]


def to_2tuple(value: int | Sequence[int]) -> tuple[int, int]:
    """``n -> (n, n)``; a ``(height, width)`` pair is returned as a tuple."""
    if isinstance(value, int):
        return (value, value)
    height, width = value
    return (int(height), int(width))


def patch_grid(size: tuple[int, int], patch_size: tuple[int, int],
               pad: bool = False) -> tuple[int, int]:
    """The patch grid ``(gh, gw)`` of a ``size`` map: rows and columns the patch does not cover
    are dropped, or, with ``pad`` (the map zero-padded to whole patches), counted."""
    if pad:
        return (-(-size[0] // patch_size[0]), -(-size[1] // patch_size[1]))
    return (size[0] // patch_size[0], size[1] // patch_size[1])


def layer_norm(dim: int) -> nn.LayerNorm:
    """The default norm of the layers: LayerNorm with eps 1e-6 (the ViT release's, flax's
    default), not PyTorch's 1e-5."""
    return nn.LayerNorm(dim, eps=1e-6)


def is_square(n: int) -> bool:
    """Whether ``n`` is a positive perfect square (a square grid of position rows)."""
    return n > 0 and math.isqrt(n) ** 2 == n
