"""The transformer's position-wise MLP: Linear, GELU, Linear.

Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021), eq. 3.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Mlp"]


class Mlp(nn.Module):
    """``fc2(drop(gelu(fc1(x))))`` followed by dropout.

    Args:
        in_features: input and output width D.
        hidden_features: hidden width (default ``4 * in_features``).
        gelu_approximate: ``"none"`` for the exact erf GELU (PyTorch), ``"tanh"`` for the
            tanh approximation that JAX uses by default.
        bias: whether both Linears have biases.
        drop: dropout after the activation and after ``fc2``.
    """

    def __init__(self, in_features: int, *, hidden_features: int | None = None,
                 gelu_approximate: str = "none", bias: bool = True, drop: float = 0.0) -> None:
        super().__init__()
        hidden_features = hidden_features or 4 * in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = nn.GELU(approximate=gelu_approximate)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, in_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.act(self.fc1(x)))
        return self.drop2(self.fc2(x))
