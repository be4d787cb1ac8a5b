"""The transformer's position-wise MLP: Linear, activation, Linear.

Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021), eq. 3.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .weight_init import init_linear_

__all__ = ["Mlp"]


class Mlp(nn.Module):
    """``fc2(drop(act(fc1(x))))`` followed by dropout.

    Args:
        in_features: input and output width D.
        hidden_features: hidden width (default ``4 * in_features``).
        act_layer: builds the activation: ``nn.GELU`` is the exact erf GELU (PyTorch);
            ``partial(nn.GELU, approximate="tanh")`` the tanh approximation JAX uses.
        bias: whether both Linears have biases.
        drop: dropout after the activation and after ``fc2``.
    """

    def __init__(self, in_features: int, *, hidden_features: int | None = None,
                 act_layer: Callable[[], nn.Module] = nn.GELU, bias: bool = True,
                 drop: float = 0.0) -> None:
        super().__init__()
        hidden_features = hidden_features or 4 * in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, in_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    @torch.no_grad()
    def init_weights(self, mode: str) -> None:
        """``"timm"``: trunc-normal 0.02, zero biases; ``"jax"``: Xavier, N(0, 1e-6) biases."""
        for linear in (self.fc1, self.fc2):
            init_linear_(linear, mode, jax_bias_std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.act(self.fc1(x)))
        return self.drop2(self.fc2(x))
