"""Multi-head self-attention with one fused q/k/v projection.

Vaswani et al., "Attention Is All You Need" (NeurIPS 2017); the ViT encoder's MSA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ATTN_IMPLS
from ..errors import ConfigError

__all__ = ["Attention", "SelectableAttention"]


class SelectableAttention(nn.Module):
    """Base of the multi-head attention modules: the head split and the run-time choice of path.

    ``attn_impl`` is ``"sdpa"`` (``F.scaled_dot_product_attention``) or ``"math"`` (the
    explicit softmax); setting anything else raises.
    """

    def __init__(self, dim: int, *, num_heads: int, attn_impl: str) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_impl = attn_impl

    @property
    def attn_impl(self) -> str:
        return self._attn_impl

    @attn_impl.setter
    def attn_impl(self, value: str) -> None:
        if value not in ATTN_IMPLS:
            raise ConfigError(
                f"attn_impl={value!r} is not one of {', '.join(map(repr, ATTN_IMPLS))}"
            )
        self._attn_impl = value


class Attention(SelectableAttention):
    """Self-attention over tokens ``(B, N, D) -> (B, N, D)``.

    ``qkv`` is one Linear whose output rows are q, k, v in that order, each laid out head-major
    (rows ``h * hd ... (h + 1) * hd - 1`` belong to head h), the layout of timm and of
    ``nn.MultiheadAttention.in_proj_weight``.

    Two implementations give the same function: ``"sdpa"`` calls
    ``F.scaled_dot_product_attention`` (fused kernels where available) and ``"math"`` spells
    out ``softmax(q k^T / sqrt(hd)) v``. Switch at run time with the ``attn_impl`` attribute.
    :meth:`forward_with_attn` always uses the math path and also returns the probabilities.

    Args:
        dim: token width D.
        num_heads: heads H; ``dim`` must be divisible by it.
        qkv_bias: whether the q/k/v projection has a bias.
        attn_drop: dropout on the attention probabilities (training only).
        proj_drop: dropout after the output projection.
        attn_impl: ``"sdpa"`` or ``"math"``.
    """

    def __init__(self, dim: int, *, num_heads: int = 8, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0,
                 attn_impl: str = "sdpa") -> None:
        super().__init__(dim, num_heads=num_heads, attn_impl=attn_impl)
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, N, hd)
        return q, k, v

    def _merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, H, N, hd = x.shape
        x = x.transpose(1, 2).reshape(B, N, H * hd)  # (B, N, D)
        return self.proj_drop(self.proj(x))

    def _math(self, q: torch.Tensor, k: torch.Tensor,
              v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Scale q before the product, as Google's and timm's code do.
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B, H, N, N)
        probs = attn.softmax(dim=-1)
        return self.attn_drop(probs) @ v, probs  # (B, H, N, hd), (B, H, N, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split_heads(x)
        if self._attn_impl == "sdpa":
            dropout_p = self.attn_drop.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:
            out, _ = self._math(q, k, v)
        return self._merge_heads(out)

    def forward_with_attn(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`forward`, also returning the attention probabilities ``(B, H, N, N)``.

        The probabilities are taken before attention dropout; each row sums to one.
        """
        q, k, v = self._split_heads(x)
        out, probs = self._math(q, k, v)
        return self._merge_heads(out), probs

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, attn_impl={self._attn_impl!r}"
