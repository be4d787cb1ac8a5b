"""The pre-norm transformer encoder block.

Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021), eqs. 2-3.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from .attention import Attention
from .drop_path import DropPath
from .helpers import layer_norm, overwritable
from .layer_scale import LayerScale
from .mlp import Mlp, SwiGLU

__all__ = ["Block"]


class Block(nn.Module):
    """``x + MSA(LN(x))`` then ``x + MLP(LN(x))``, with optional LayerScale and DropPath.

    The norm, activation, MLP and attention are injected as callables, so a family changes
    its numerics or its layers without a new block class.

    Args:
        dim: token width D.
        num_heads: attention heads.
        mlp_dim: MLP hidden width (default ``4 * dim``).
        qkv_bias: whether the q/k/v projection has a bias.
        proj_drop: dropout after the attention projection and in the MLP.
        attn_drop: dropout on the attention probabilities.
        drop_path: stochastic-depth rate of this block.
        init_values: LayerScale initial value, or ``None`` for no LayerScale.
        norm_layer: ``norm_layer(dim)`` builds each norm (default LayerNorm, eps 1e-6).
        act_layer: ``act_layer()`` builds the MLP's activation (default exact GELU).
        mlp_layer: ``mlp_layer(dim, hidden_features=, act_layer=, drop=)`` builds the MLP.
        attn_layer: ``attn_layer(dim, num_heads=, qkv_bias=, attn_drop=, proj_drop=)`` builds
            the attention (default :class:`Attention` with SDPA).
    """

    def __init__(self, dim: int, *, num_heads: int, mlp_dim: int | None = None,
                 qkv_bias: bool = True, proj_drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, init_values: float | None = None,
                 norm_layer: Callable[[int], nn.Module] = layer_norm,
                 act_layer: Callable[[], nn.Module] = nn.GELU,
                 mlp_layer: Callable[..., nn.Module] = Mlp,
                 attn_layer: Callable[..., nn.Module] = Attention) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = attn_layer(dim, num_heads=num_heads, qkv_bias=qkv_bias,
                               attn_drop=attn_drop, proj_drop=proj_drop)
        self.ls1 = _layer_scale(dim, init_values)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = mlp_layer(dim, hidden_features=mlp_dim, act_layer=act_layer, drop=proj_drop)
        self.ls2 = _layer_scale(dim, init_values)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
            x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
            return x
        # Evaluation: DropPath is the identity, so it is not called.
        if not torch.jit.is_scripting():  # TorchScript compiles none of this branch
            if self._sums_in_place():
                # The same sums, written into each branch's fresh output (y + x == x + y).
                x = self.ls1(self.attn(self.norm1(x))).add_(x)
                x = self.ls2(self.mlp(self.norm2(x))).add_(x)
                return x
        x = x + self.ls1(self.attn(self.norm1(x)))
        x = x + self.ls2(self.mlp(self.norm2(x)))
        return x

    def _sums_in_place(self) -> bool:
        """Whether both residual branches end in a buffer of their own that nobody else can
        see: vitzoo's attention and MLP (their last Linear makes the output) or a LayerScale
        (its product does), with no hooks on the way (:func:`overwritable`)."""
        attn, mlp = self.attn, self.mlp
        if not (isinstance(attn, Attention) and isinstance(attn.proj, nn.Linear)
                and isinstance(mlp, (Mlp, SwiGLU)) and isinstance(mlp.fc2, nn.Linear)
                and isinstance(self.ls1, _FRESH_OR_PASS) and isinstance(self.ls2, _FRESH_OR_PASS)):
            return False
        return overwritable(attn, attn.proj, self.ls1, mlp, mlp.fc2, self.ls2)

    def forward_with_attn(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`forward`, also returning the attention probabilities ``(B, H, N, N)``."""
        # the attention has Attention's forward_with_attn (not part of nn.Module's interface)
        y, probs = cast(Attention, self.attn).forward_with_attn(self.norm1(x))
        x = x + self.drop_path1(self.ls1(y))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x, probs


_FRESH_OR_PASS = (nn.Identity, LayerScale)  # return their input as it is, or a new product


def _layer_scale(dim: int, init_values: float | None) -> nn.Module:
    return LayerScale(dim, init_values=init_values) if init_values is not None else nn.Identity()
