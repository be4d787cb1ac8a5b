"""Multi-head attention pooling (MAP): one learned query attends to every token.

Lee et al., "Set Transformer" (ICML 2019), pooling by multihead attention; the ``MAPHead`` of
big_vision (Zhai et al., "Scaling Vision Transformers", CVPR 2022). Parameter names follow
timm's ``AttentionPoolLatent`` (``attn_pool.latent``, ``.q``, ``.kv``, ``.proj``, ``.norm``,
``.mlp``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import SelectableAttention
from .mlp import Mlp

__all__ = ["AttentionPool"]


class AttentionPool(SelectableAttention):
    """``x = MHA(q=latent, kv=tokens)``, then ``x + MLP(LN(x))``: ``(B, N, D) -> (B, D)``.

    As in big_vision, there is no norm before the attention and no residual around it.

    Args:
        dim: token width D.
        num_heads: attention heads (the encoder's).
        mlp_dim: the MLP's hidden width (the encoder's).
        qkv_bias: whether the q and kv projections have biases.
        gelu_approximate: ``"none"`` or ``"tanh"``.
        norm_eps: LayerNorm epsilon.
        attn_impl: ``"sdpa"`` or ``"math"``.
    """

    def __init__(self, dim: int, *, num_heads: int, mlp_dim: int | None = None,
                 qkv_bias: bool = True, gelu_approximate: str = "none", norm_eps: float = 1e-6,
                 attn_impl: str = "sdpa") -> None:
        super().__init__(dim, num_heads=num_heads, attn_impl=attn_impl)
        self.latent = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, hidden_features=mlp_dim, gelu_approximate=gelu_approximate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        H, hd = self.num_heads, self.head_dim
        q = self.q(self.latent.expand(B, -1, -1))
        q = q.reshape(B, 1, H, hd).transpose(1, 2)  # (B, H, 1, hd)
        kv = self.kv(x).reshape(B, N, 2, H, hd)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # 2 x (B, H, N, hd)
        if self._attn_impl == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = ((q * hd ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        x = self.proj(out.transpose(1, 2).reshape(B, 1, D))  # (B, 1, D)
        x = x + self.mlp(self.norm(x))
        return x[:, 0]  # (B, D)
