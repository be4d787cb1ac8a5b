"""The Vision Transformer.

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at
Scale" (ICLR 2021). Parameter names follow timm, so timm state dicts load unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import ViTConfig
from ..errors import ConfigError
from ..layers import (
    Attention,
    AttentionPool,
    Block,
    HybridEmbed,
    Mlp,
    PatchEmbed,
    check_init_mode,
    lecun_normal_,
    sincos_2d_pos_embed,
)
from ..layers.attention import SelectableAttention
from .hybrid import build_resnet_backbone

__all__ = ["LayerFactories", "VisionTransformer", "init_submodules"]


class LayerFactories:
    """The layers a config describes, as the callables the blocks take: its numerics (norm
    eps, GELU variant) and its choice of MLP and attention."""

    def __init__(self, cfg: ViTConfig) -> None:
        self.norm: Callable[[int], nn.Module] = partial(nn.LayerNorm, eps=cfg.norm_eps)
        self.act: Callable[[], nn.Module] = partial(nn.GELU, approximate=cfg.gelu_approximate)
        self.mlp: Callable[..., nn.Module] = Mlp
        self.attn: Callable[..., nn.Module] = partial(Attention, attn_impl=cfg.attn_impl)


def init_submodules(model: nn.Module, mode: str, *, only: Iterable[str] | None = None) -> None:
    """Initialise every submodule of ``model`` in ``mode`` by its own ``init_weights(mode)``
    (LayerNorm and GroupNorm by ``reset_parameters``), optionally only those under the
    top-level names ``only``.

    Children come before their parents, so a parent refines what its children set (the
    bottleneck unit zeroes its last norm's scale). Plain ``nn.Linear`` / ``nn.Conv2d`` children
    are their owner layer's business; the model's own parameters (tokens, position table,
    heads) are not touched here.
    """
    check_init_mode(mode)
    roots = None if only is None else set(only)
    for name, module in reversed(list(model.named_modules())):
        if not name or (roots is not None and name.split(".")[0] not in roots):
            continue
        if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            module.reset_parameters()
        elif callable(getattr(module, "init_weights", None)):
            module.init_weights(mode)


def _patch_embed(cfg: ViTConfig) -> PatchEmbed | HybridEmbed:
    if cfg.backbone_layers is None:
        return PatchEmbed(img_size=cfg.img_size, patch_size=cfg.patch_size,
                          in_chans=cfg.in_chans, embed_dim=cfg.embed_dim)
    backbone, channels = build_resnet_backbone(cfg.backbone_layers, width=cfg.backbone_width,
                                               in_chans=cfg.in_chans)
    return HybridEmbed(backbone, img_size=cfg.img_size, feature_size=cfg.feature_size,
                       feature_dim=channels, patch_size=cfg.patch_size, in_chans=cfg.in_chans,
                       embed_dim=cfg.embed_dim)


def _drop_path_rates(rate: float, depth: int) -> list[float]:
    """The linear stochastic-depth rule: block i drops with ``rate * i / (depth - 1)``."""
    if depth == 1:
        return [0.0]
    return [rate * i / (depth - 1) for i in range(depth)]


class VisionTransformer(nn.Module):
    """ViT: patch embedding, class token, position embeddings, pre-norm blocks and a head.

    Args:
        cfg: the architecture; see :class:`vitzoo.ViTConfig`.

    Attributes:
        num_features: width of the tokens :meth:`forward_features` returns (D).
        head_hidden_size: width of the head's input (the representation size when there is
            a ``pre_logits`` layer, else D).
        num_prefix_tokens: class/distillation tokens before the patch tokens.
        pretrained_cfg: preprocessing and provenance of the weights (a dict with the keys of
            :class:`vitzoo.pretrained.PretrainedCfg`; set by ``create_model`` / ``load_model``).
    """

    def __init__(self, cfg: ViTConfig | None = None) -> None:
        super().__init__()
        cfg = cfg if cfg is not None else ViTConfig()
        if not isinstance(cfg, ViTConfig):
            raise ConfigError(
                f"VisionTransformer takes a ViTConfig, got {type(cfg).__name__}; "
                "build one with vitzoo.ViTConfig(...) or use vitzoo.create_model(name)"
            )
        self.cfg = cfg
        D = cfg.embed_dim
        self.num_classes = cfg.num_classes
        self.global_pool = cfg.global_pool
        self.num_features = self.embed_dim = D
        self.head_hidden_size = cfg.representation_size or D
        self.num_prefix_tokens = cfg.num_prefix_tokens
        self.grad_checkpointing = False
        self.pretrained_cfg: dict[str, Any] = {}
        self._layers = LayerFactories(cfg)

        self.patch_embed = _patch_embed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.class_token else None
        self._build_pos_embed(cfg)
        self.dist_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.distilled else None
        self.pos_drop = nn.Dropout(cfg.pos_drop_rate)
        self.blocks = nn.Sequential(*[
            Block(D, num_heads=cfg.num_heads, mlp_dim=cfg.mlp_hidden_dim, qkv_bias=cfg.qkv_bias,
                  proj_drop=cfg.proj_drop_rate, attn_drop=cfg.attn_drop_rate, drop_path=rate,
                  init_values=cfg.init_values, norm_layer=self._layers.norm,
                  act_layer=self._layers.act, mlp_layer=self._layers.mlp,
                  attn_layer=self._layers.attn)
            for rate in _drop_path_rates(cfg.drop_path_rate, cfg.depth)
        ])
        # Google: final norm over all tokens, then pool. timm's fc_norm: pool, then norm.
        self.norm = nn.Identity() if cfg.fc_norm else self._layers.norm(D)
        self.attn_pool = self._new_attn_pool() if cfg.global_pool == "map" else None
        self.fc_norm = self._layers.norm(D) if cfg.fc_norm else nn.Identity()
        if cfg.representation_size:
            self.pre_logits = nn.Sequential(OrderedDict([
                ("fc", nn.Linear(D, cfg.representation_size)),
                ("act", nn.Tanh()),
            ]))
        else:
            self.pre_logits = nn.Identity()
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self._replace_heads(cfg.num_classes)
        self.init_weights(cfg.weight_init)

    def _build_pos_embed(self, cfg: ViTConfig) -> None:
        num_tokens = self.num_prefix_tokens + self.patch_embed.num_patches
        if cfg.pos_embed == "learn":
            self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, cfg.embed_dim))
            return
        # Prefix tokens get a zero row: the same function as big_vision, which adds the table
        # to the patch tokens only.
        table = sincos_2d_pos_embed(self.patch_embed.grid_size, cfg.embed_dim)
        prefix = table.new_zeros(1, self.num_prefix_tokens, cfg.embed_dim)
        self.register_buffer("pos_embed", torch.cat([prefix, table], dim=1), persistent=False)

    def _new_attn_pool(self) -> AttentionPool:
        cfg = self.cfg
        return AttentionPool(cfg.embed_dim, num_heads=cfg.num_heads, mlp_dim=cfg.mlp_hidden_dim,
                             qkv_bias=cfg.qkv_bias, norm_layer=self._layers.norm,
                             act_layer=self._layers.act, attn_impl=cfg.attn_impl)

    # -- initialisation ----------------------------------------------------------------------
    def _new_head(self, num_classes: int) -> nn.Module:
        if num_classes == 0:
            return nn.Identity()
        head = nn.Linear(self.head_hidden_size, num_classes)
        _init_head(head, self.cfg.weight_init)
        return head

    @torch.no_grad()
    def init_weights(self, mode: str | None = None, *,
                     only: Iterable[str] | None = None) -> None:
        """Re-initialise the parameters (all of them, or those under the ``only`` roots).

        Every layer initialises itself (``init_weights(mode)`` of :mod:`vitzoo.layers`, applied
        by :func:`init_submodules`); the model sets its own tokens, position table and heads.

        Args:
            mode: ``None`` for the config's ``weight_init``, or one of
                ``"timm"``: trunc-normal(0.02) Linears and position embeddings, class token
                N(0, 1e-6), PyTorch's default patch conv;
                ``"jax"``: Google's initialisers: Xavier-uniform q, k, v, out and MLP
                kernels, N(0, 1e-6) MLP biases, LeCun-normal patch and representation
                kernels, N(0, 0.02) position embeddings, zero class token and a zero head.
            only: top-level names (``"head"``, ``"attn_pool"``, ``"pre_logits"`` ...) to
                initialise, leaving the rest as it is; used after loading weights.
        """
        mode = self.cfg.weight_init if mode is None else mode
        check_init_mode(mode)
        roots = None if only is None else set(only)

        def keep(name: str) -> bool:
            return roots is None or name in roots

        init_submodules(self, mode, only=roots)
        self._init_tokens(mode, keep)
        if isinstance(self.pre_logits, nn.Sequential) and keep("pre_logits"):
            fc = self.pre_logits.fc
            if mode == "jax":
                lecun_normal_(fc.weight)
            else:
                nn.init.trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)
        for name in ("head", "head_dist"):
            head = getattr(self, name, None)
            if isinstance(head, nn.Linear) and keep(name):
                _init_head(head, mode)

    def _init_tokens(self, mode: str, keep: Callable[[str], bool]) -> None:
        if isinstance(self.pos_embed, nn.Parameter) and keep("pos_embed"):
            if mode == "jax":
                nn.init.normal_(self.pos_embed, std=0.02)
            else:
                nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None and keep("cls_token"):
            if mode == "jax":
                nn.init.zeros_(self.cls_token)
            else:
                nn.init.normal_(self.cls_token, std=1e-6)
        if self.dist_token is not None and keep("dist_token"):
            if mode == "jax":
                nn.init.zeros_(self.dist_token)
            else:
                nn.init.trunc_normal_(self.dist_token, std=0.02)

    # -- the backbone contract ---------------------------------------------------------------
    def _prefix_tokens(self, batch: int) -> list[torch.Tensor]:
        tokens = [t for t in (self.cls_token, self.dist_token) if t is not None]
        return [t.expand(batch, -1, -1) for t in tokens]  # each (B, 1, D)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # (B, N, D)
        x = torch.cat([*self._prefix_tokens(x.shape[0]), x], dim=1)  # (B, P + N, D)
        return self.pos_drop(x + self.pos_embed)

    def _run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, x, use_reentrant=False)
        return block(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens after the final norm: ``(B, C, H, W) -> (B, P + N, D)``."""
        x = self._embed(x)
        for block in self.blocks:
            x = self._run_block(block, x)
        return self.norm(x)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.attn_pool is not None:
            return self.attn_pool(x)  # (B, D), attending to every token
        if self.global_pool == "avg":
            return x[:, self.num_prefix_tokens:].mean(dim=1)  # (B, D), patch tokens only
        return x[:, 0]  # (B, D), the class token

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the tokens of :meth:`forward_features` and classify them.

        Args:
            x: ``(B, P + N, D)`` tokens from :meth:`forward_features`.
            pre_logits: return the head's input ``(B, head_hidden_size)`` instead of logits.
        """
        x = self.fc_norm(self._pool(x))
        x = self.head_drop(self.pre_logits(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``, or pooled features when ``num_classes == 0``."""
        return self.forward_head(self.forward_features(x))

    def _block_indices(self, indices: int | Sequence[int] | None) -> list[int]:
        depth = len(self.blocks)
        if indices is None:
            return list(range(depth))
        if isinstance(indices, int):
            if not 0 < indices <= depth:
                raise ConfigError(f"indices={indices} must be in 1..{depth} (the last n blocks)")
            return list(range(depth - indices, depth))
        chosen = []
        for i in indices:
            if not -depth <= i < depth:
                raise ConfigError(f"block index {i} is out of range for depth {depth}")
            chosen.append(i % depth)
        return sorted(set(chosen))

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
        output_fmt: str = "NCHW", intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Outputs of chosen blocks, for dense-prediction and feature-pyramid users.

        Args:
            x: images ``(B, C, H, W)``.
            indices: ``None`` for every block, an int n for the last n blocks, or a sequence of
                block indices (negative counts from the end).
            norm: apply the final norm to each intermediate.
            output_fmt: ``"NCHW"`` gives patch tokens as ``(B, D, gh, gw)`` maps, ``"NLC"`` as
                ``(B, N, D)`` sequences. Prefix tokens are dropped in both.
            intermediates_only: return only the list (and stop after the last chosen block).

        Returns:
            ``intermediates_only=True``: the list of intermediates, in block order.
            Otherwise ``(features, intermediates)``, ``features`` being
            :meth:`forward_features`'s output.
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ConfigError(f"output_fmt={output_fmt!r} is not 'NCHW' or 'NLC'")
        take = self._block_indices(indices)
        last = take[-1] if intermediates_only else len(self.blocks) - 1
        gh, gw = self.patch_embed.grid_size
        intermediates = []
        x = self._embed(x)
        for i, block in enumerate(self.blocks):
            if i > last:
                break
            x = self._run_block(block, x)
            if i in take:
                y = self.norm(x) if norm else x
                y = y[:, self.num_prefix_tokens:]  # (B, N, D)
                if output_fmt == "NCHW":
                    y = y.reshape(y.shape[0], gh, gw, -1).permute(0, 3, 1, 2)  # (B, D, gh, gw)
                intermediates.append(y)
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def attention_maps(self, x: torch.Tensor,
                       indices: int | Sequence[int] | None = None) -> list[torch.Tensor]:
        """Attention probabilities ``(B, H, P + N, P + N)`` of the chosen blocks.

        Args:
            x: images ``(B, C, H, W)``.
            indices: as in :meth:`forward_intermediates`.
        """
        take = self._block_indices(indices)
        maps = []
        x = self._embed(x)
        for i, block in enumerate(self.blocks):
            if i > take[-1]:
                break
            x, probs = block.forward_with_attn(x)
            if i in take:
                maps.append(probs)
        return maps

    # -- training helpers ----------------------------------------------------------------------
    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head (initialised as ``cfg.weight_init`` says) and optionally the pooling.

        Changing to or from ``global_pool="map"`` adds or removes the attention-pooling module
        (a new one is initialised like the head), so the model pools as its config says.
        """
        changes: dict[str, Any] = {"num_classes": num_classes}
        if global_pool is not None:
            changes["global_pool"] = global_pool
        self.cfg = self.cfg.replace(**changes)
        self.num_classes = num_classes
        self.global_pool = self.cfg.global_pool
        reference = self.patch_embed.proj.weight
        if self.global_pool != "map":
            self.attn_pool = None
        elif self.attn_pool is None:
            self.attn_pool = self._new_attn_pool()
            self.init_weights(only=["attn_pool"])
        self._replace_heads(num_classes)
        self.to(device=reference.device, dtype=reference.dtype)

    def _replace_heads(self, num_classes: int) -> None:
        self.head = self._new_head(num_classes)

    def set_attn_impl(self, impl: str) -> None:
        """Use ``"sdpa"`` or ``"math"`` attention in every block from now on."""
        self.cfg = self.cfg.replace(attn_impl=impl)
        self._layers = LayerFactories(self.cfg)
        for module in self.modules():
            if isinstance(module, SelectableAttention):
                module.attn_impl = impl

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass to save memory."""
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        """Parameter names conventionally excluded from weight decay."""
        names = {"pos_embed", "cls_token", "dist_token"}
        return {name for name, _ in self.named_parameters() if name in names}

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Regexes grouping parameters by depth (timm's format, for layer-wise lr decay)."""
        return {
            "stem": r"^cls_token|^dist_token|^pos_embed|^patch_embed",
            "blocks": r"^blocks\.(\d+)" if coarse else [
                (r"^blocks\.(\d+)", None),
                (r"^norm", (99999,)),
            ],
        }


def _init_head(head: nn.Linear, mode: str) -> None:
    if mode == "jax":
        nn.init.zeros_(head.weight)  # Google fine-tunes from a zero head
    else:
        nn.init.trunc_normal_(head.weight, std=0.02)
    nn.init.zeros_(head.bias)
