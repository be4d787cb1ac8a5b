"""Fixed 2-D sin-cos position embeddings, computed exactly as big_vision does.

Beyer et al., "Better plain ViT baselines for ImageNet-1k" (2022); big_vision's
``posemb_sincos_2d``.
"""

from __future__ import annotations

import torch

__all__ = ["sincos_2d_pos_embed"]


def sincos_2d_pos_embed(grid_size: tuple[int, int], dim: int, *,
                        temperature: float = 10_000.0) -> torch.Tensor:
    """The ``(1, gh * gw, dim)`` float32 table for a ``(gh, gw)`` grid.

    Token ``t = r * gw + c`` gets ``[sin(c w), cos(c w), sin(r w), cos(r w)]`` with
    ``w_j = 1 / temperature ** (j / (dim / 4 - 1))``: the column (x) half comes first and the
    exponent runs from 0 to 1 inclusive, both as in big_vision.

    Args:
        grid_size: ``(gh, gw)``.
        dim: embedding width, a multiple of 4 and at least 8.
        temperature: base of the frequencies.
    """
    if dim % 4 or dim < 8:
        raise ValueError(f"sin-cos position embeddings need dim divisible by 4 and >= 8, got {dim}")
    gh, gw = grid_size
    quarter = dim // 4
    omega = torch.arange(quarter, dtype=torch.float32) / (quarter - 1)
    omega = 1.0 / temperature ** omega  # (D/4,)
    rows, cols = torch.meshgrid(torch.arange(gh, dtype=torch.float32),
                                torch.arange(gw, dtype=torch.float32), indexing="ij")
    x = cols.reshape(-1, 1) * omega  # (N, D/4): column coordinate
    y = rows.reshape(-1, 1) * omega  # (N, D/4): row coordinate
    table = torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)  # (N, D)
    return table.unsqueeze(0)  # (1, N, D)
