"""LayerScale: a learned per-channel scale on each residual branch.

Touvron et al., "Going deeper with Image Transformers" (CaiT, ICCV 2021).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LayerScale"]


class LayerScale(nn.Module):
    """Multiply the last dimension by ``gamma`` (initialised to ``init_values``).

    Args:
        dim: channels D.
        init_values: initial value of every entry of ``gamma``.
    """

    def __init__(self, dim: int, *, init_values: float = 1e-5) -> None:
        super().__init__()
        self.init_values = init_values
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def reset_parameters(self) -> None:
        nn.init.constant_(self.gamma, self.init_values)

    def init_weights(self, mode: str) -> None:
        """Every entry back to ``init_values`` (the same in both schemes)."""
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma
