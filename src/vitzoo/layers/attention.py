"""Multi-head self-attention with one fused q/k/v projection, and the attention kernel it
shares with the attention-pooling head.

Vaswani et al., "Attention Is All You Need" (NeurIPS 2017); the ViT encoder's MSA.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .weight_init import init_linear_

__all__ = ["ATTN_IMPLS", "Attention", "SelectableAttention", "attention_probs",
           "scaled_dot_product"]

ATTN_IMPLS = ("sdpa", "math")


def attention_probs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    dropout_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(q k^T / sqrt(hd)) v`` spelt out; also returns the probabilities.

    Args:
        q: ``(B, H, Nq, hd)``; k, v: ``(B, H, N, hd)``.
        dropout_p: dropout on the probabilities (0 outside training).

    Returns:
        ``(out (B, H, Nq, hd), probs (B, H, Nq, N))``; the probabilities are taken before
        dropout, so each row sums to one.
    """
    # Scale q before the product, as Google's and timm's code do.
    attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, H, Nq, N)
    probs = attn.softmax(dim=-1)
    dropped = F.dropout(probs, p=dropout_p) if dropout_p > 0.0 else probs
    return dropped @ v, probs


def scaled_dot_product(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, impl: str = "sdpa",
                       dropout_p: float = 0.0) -> torch.Tensor:
    """The attention kernel: ``"sdpa"`` (``F.scaled_dot_product_attention``, fused kernels
    where available) or ``"math"`` (:func:`attention_probs`); the same function either way.

    (Positional-or-keyword arguments: TorchScript compiles no keyword-only ones.)"""
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    out, _ = attention_probs(q, k, v, dropout_p=dropout_p)
    return out


def _default_norm(dim: int) -> nn.Module:
    return nn.LayerNorm(dim, eps=1e-6)


class SelectableAttention(nn.Module):
    """Base of the multi-head attention modules: the head split and the run-time choice of path.

    ``attn_impl`` is ``"sdpa"`` or ``"math"``; setting anything else raises.
    """

    __jit_unused_properties__ = ["attn_impl"]

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
    ``nn.MultiheadAttention.in_proj_weight``. Switch between the SDPA and the explicit path at
    run time with the ``attn_impl`` attribute; :meth:`forward_with_attn` always takes the
    explicit path and also returns the probabilities.

    Args:
        dim: token width D.
        num_heads: heads H; ``dim`` must be divisible by it.
        qkv_bias: whether the q/k/v projection has a bias.
        attn_drop: dropout on the attention probabilities (training only).
        proj_drop: dropout after the output projection.
        attn_impl: ``"sdpa"`` or ``"math"``.
        qk_norm: normalise each head's queries and keys (``q_norm``, ``k_norm``) before the
            product, as timm's ``qk_norm``.
        norm_layer: builds those norms from the head width (default LayerNorm, eps 1e-6).
    """

    def __init__(self, dim: int, *, num_heads: int = 8, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0,
                 attn_impl: str = "sdpa", qk_norm: bool = False,
                 norm_layer: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__(dim, num_heads=num_heads, attn_impl=attn_impl)
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        make_norm = norm_layer if norm_layer is not None else _default_norm
        self.qk_norm = qk_norm  # without it q_norm / k_norm are identities, not called
        self.q_norm = make_norm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = make_norm(self.head_dim) if qk_norm else nn.Identity()
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    @torch.no_grad()
    def init_weights(self, mode: str) -> None:
        """``"timm"``: trunc-normal 0.02; ``"jax"``: Xavier on each of q, k, v and the output
        kernel. Biases zero."""
        init_linear_(self.qkv, mode, parts=3)
        init_linear_(self.proj, mode)

    def _split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, N, hd)
        if self.qk_norm:
            return self.q_norm(q), self.k_norm(k), v
        return q, k, v

    def _merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, H, N, hd = x.shape
        x = self.proj(x.transpose(1, 2).reshape(B, N, H * hd))  # (B, N, D)
        return self.proj_drop(x) if self.training else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split_heads(x)
        dropout_p = self.attn_drop.p if self.training else 0.0
        return self._merge_heads(scaled_dot_product(q, k, v, impl=self._attn_impl,
                                                    dropout_p=dropout_p))

    def forward_with_attn(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`forward`, also returning the attention probabilities ``(B, H, N, N)``.

        The probabilities are taken before attention dropout; each row sums to one.
        """
        q, k, v = self._split_heads(x)
        dropout_p = self.attn_drop.p if self.training else 0.0
        out, probs = attention_probs(q, k, v, dropout_p=dropout_p)
        return self._merge_heads(out), probs

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, attn_impl={self._attn_impl!r}"
