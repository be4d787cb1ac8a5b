"""Multi-head attention pooling (MAP): one learned query attends to every token.

Lee et al., "Set Transformer" (ICML 2019), pooling by multihead attention; the ``MAPHead`` of
big_vision (Zhai et al., "Scaling Vision Transformers", CVPR 2022). Parameter names follow
timm's ``AttentionPoolLatent`` (``attn_pool.latent``, ``.q``, ``.kv``, ``.proj``, ``.norm``,
``.mlp``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .attention import SelectableAttention, scaled_dot_product
from .helpers import layer_norm
from .mlp import Mlp
from .weight_init import init_linear_

__all__ = ["AttentionPool"]


class AttentionPool(SelectableAttention):
    """``x = MHA(q=latent, kv=tokens)``, then ``x + MLP(LN(x))``: ``(B, N, D) -> (B, D)``.

    As in big_vision, there is no norm before the attention and no residual around it. The
    attention is the encoder's kernel (:func:`vitzoo.layers.attention.scaled_dot_product`).

    Args:
        dim: token width D.
        num_heads: attention heads (the encoder's).
        mlp_dim: the MLP's hidden width (the encoder's).
        qkv_bias: whether the q and kv projections have biases.
        norm_layer: builds the norm before the MLP from the width.
        act_layer: the MLP's activation.
        attn_impl: ``"sdpa"`` or ``"math"``.
    """

    def __init__(self, dim: int, *, num_heads: int, mlp_dim: int | None = None,
                 qkv_bias: bool = True,
                 norm_layer: Callable[[int], nn.Module] = layer_norm,
                 act_layer: Callable[[], nn.Module] = nn.GELU,
                 attn_impl: str = "sdpa") -> None:
        super().__init__(dim, num_heads=num_heads, attn_impl=attn_impl)
        self.latent = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.norm = norm_layer(dim)
        self.mlp = Mlp(dim, hidden_features=mlp_dim, act_layer=act_layer)

    @torch.no_grad()
    def init_weights(self, mode: str) -> None:
        """``"timm"``: latent trunc-normal(D^-0.5), Linears trunc-normal 0.02; ``"jax"``:
        big_vision's Xavier-initialised probe and kernels (k and v separately). Biases zero."""
        if mode == "jax":
            nn.init.xavier_uniform_(self.latent.view(1, -1))
        else:
            nn.init.trunc_normal_(self.latent, std=self.latent.shape[-1] ** -0.5)
        init_linear_(self.q, mode)
        init_linear_(self.kv, mode, parts=2)
        init_linear_(self.proj, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        H, hd = self.num_heads, self.head_dim
        q = self.q(self.latent.expand(B, -1, -1))
        q = q.reshape(B, 1, H, hd).transpose(1, 2)  # (B, H, 1, hd)
        kv = self.kv(x).reshape(B, N, 2, H, hd)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # 2 x (B, H, N, hd)
        out = scaled_dot_product(q, k, v, impl=self._attn_impl)
        x = self.proj(out.transpose(1, 2).reshape(B, 1, D))  # (B, 1, D)
        x = x + self.mlp(self.norm(x))
        return x[:, 0]  # (B, D)
