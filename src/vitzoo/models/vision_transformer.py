"""The Vision Transformer.

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at
Scale" (ICLR 2021). Parameter names follow timm, so timm state dicts load unchanged.
"""

# No `from __future__ import annotations` here: torch.fx copies forward's annotations into the
# traced code, and TorchScript reads only real types there.

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, cast

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
    QuickGELU,
    SwiGLU,
    check_init_mode,
    interpolate_pos_embed,
    lecun_normal_,
    sincos_2d_pos_embed,
    sincos_pos_embed_for,
)
from ..layers.attention import SelectableAttention
from .hybrid import build_resnet_backbone

__all__ = ["ATTENTION_HEADS", "LayerFactories", "VisionTransformer", "init_submodules",
           "take_indices"]

ATTENTION_HEADS = ("all", "mean")

# Run-time position tables depend on the input's size: one node each under torch.fx tracing.
torch.fx.wrap("interpolate_pos_embed")
torch.fx.wrap("sincos_pos_embed_for")


def take_indices(depth: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """timm's block selection: ``None`` every block, an int n the last n, a sequence those
    blocks (negative counts from the end). Returns the sorted indices and the largest."""
    if indices is None:
        indices = depth
    if isinstance(indices, int):
        if isinstance(indices, bool) or not 0 < indices <= depth:
            raise ConfigError(f"indices={indices!r} must be in 1..{depth} (the last n blocks)")
        chosen = list(range(depth - indices, depth))
    else:
        chosen = []
        for i in indices:
            if not isinstance(i, int) or isinstance(i, bool) or not -depth <= i < depth:
                raise ConfigError(f"block index {i!r} is out of range for depth {depth} "
                                  f"(0..{depth - 1}, or negative from the end)")
            chosen.append(i % depth)
        if not chosen:
            raise ConfigError("indices is empty: name at least one block")
    chosen = sorted(set(chosen))
    return chosen, chosen[-1]


class LayerFactories:
    """The layers a config describes, as the callables the blocks take: its numerics (norm
    eps, activation) and its choice of MLP and attention."""

    def __init__(self, cfg: ViTConfig) -> None:
        self.norm: Callable[[int], nn.Module] = partial(nn.LayerNorm, eps=cfg.norm_eps)
        self.act: Callable[[], nn.Module] = (
            QuickGELU if cfg.act_layer == "quick_gelu"
            else partial(nn.GELU, approximate=cfg.gelu_approximate))
        self.mlp: Callable[..., nn.Module] = SwiGLU if cfg.mlp_layer == "swiglu" else Mlp
        self.attn: Callable[..., nn.Module] = partial(
            Attention, attn_impl=cfg.attn_impl, qk_norm=cfg.qk_norm, norm_layer=self.norm)


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
    dynamic = {"dynamic_img_size": cfg.dynamic_img_size, "dynamic_img_pad": cfg.dynamic_img_pad}
    if cfg.backbone_layers is None:
        return PatchEmbed(img_size=cfg.img_size, patch_size=cfg.patch_size,
                          in_chans=cfg.in_chans, embed_dim=cfg.embed_dim, bias=cfg.patch_bias,
                          **dynamic)
    backbone, channels = build_resnet_backbone(cfg.backbone_layers, width=cfg.backbone_width,
                                               in_chans=cfg.in_chans)
    return HybridEmbed(backbone, img_size=cfg.img_size, feature_size=cfg.feature_size,
                       feature_dim=channels, patch_size=cfg.patch_size, in_chans=cfg.in_chans,
                       embed_dim=cfg.embed_dim, **dynamic)


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
            :class:`vitzoo.pretrained.PretrainedCfg`; set by ``create_model`` / ``load_model``);
            ``default_cfg`` is the same dict (timm's older name).
        feature_info: one ``dict(module="blocks.i", num_chs=D, reduction=stride)`` per block,
            timm's description of the maps :meth:`forward_intermediates` returns.

    The forward path scripts with ``torch.jit.script``, traces with ``torch.fx`` and compiles
    with ``torch.compile(fullgraph=True)``: shape checks are single functions
    (:func:`vitzoo.layers.check_image`), and no Python-only construct is on the path.
    """

    __jit_unused_properties__ = ["default_cfg"]
    __constants__ = ["dynamic_img_size", "pos_embed_resample", "pos_embed_antialias",
                     "no_embed_class", "num_pos_prefix_tokens"]

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
        self.num_reg_tokens = cfg.reg_tokens
        self.no_embed_class = cfg.no_embed_class
        self.num_pos_prefix_tokens = cfg.num_pos_prefix_tokens
        self.in_chans = cfg.in_chans
        self.dynamic_img_size = cfg.dynamic_img_size
        self.pos_embed_resample = "sincos" if cfg.pos_embed == "sincos" else cfg.pos_embed_resample
        self.pos_embed_antialias = cfg.pos_embed_antialias
        self.grad_checkpointing = False
        self.pretrained_cfg: dict[str, Any] = {}
        self._layers = LayerFactories(cfg)

        self.patch_embed = _patch_embed(cfg)
        self.feature_info = self._feature_info()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.class_token else None
        self._build_pos_embed(cfg)
        self.dist_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.distilled else None
        self.reg_token = (nn.Parameter(torch.zeros(1, cfg.reg_tokens, D)) if cfg.reg_tokens
                          else None)
        self.pos_drop = nn.Dropout(cfg.pos_drop_rate)
        self.norm_pre = self._layers.norm(D) if cfg.pre_norm else nn.Identity()
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
            self.pre_logits: nn.Module = nn.Sequential(OrderedDict([
                ("fc", nn.Linear(D, cfg.representation_size)),
                ("act", nn.Tanh()),
            ]))
        else:
            self.pre_logits = nn.Identity()
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self._replace_heads(cfg.num_classes)
        self.init_weights(cfg.weight_init)

    def _build_pos_embed(self, cfg: ViTConfig) -> None:
        num_tokens = cfg.num_pos_prefix_tokens + self.patch_embed.num_patches
        if cfg.pos_embed == "learn":
            self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, cfg.embed_dim))
            return
        # Prefix tokens get a zero row: the same function as big_vision, which adds the table
        # to the patch tokens only.
        table = sincos_2d_pos_embed(self.patch_embed.grid_size, cfg.embed_dim)
        prefix = table.new_zeros(1, cfg.num_pos_prefix_tokens, cfg.embed_dim)
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
        head = nn.Linear(self.head_hidden_size, num_classes, bias=self.cfg.head_bias)
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
            fc = cast(nn.Linear, self.pre_logits.fc)  # built as a Linear in __init__
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
        if self.reg_token is not None and keep("reg_token"):
            if mode == "jax":
                nn.init.zeros_(self.reg_token)
            else:
                nn.init.normal_(self.reg_token, std=1e-6)

    # -- the backbone contract ---------------------------------------------------------------
    def _feature_info(self) -> list[dict[str, Any]]:
        reduction = self.patch_embed.feat_ratio()
        return [{"module": f"blocks.{i}", "num_chs": self.embed_dim, "reduction": reduction}
                for i in range(self.cfg.depth)]

    @property
    def default_cfg(self) -> dict[str, Any]:
        """``pretrained_cfg`` under timm's older name (the same dict)."""
        return self.pretrained_cfg

    @default_cfg.setter
    def default_cfg(self, value: dict[str, Any]) -> None:
        self.pretrained_cfg = value

    def _add_prefix_tokens(self, x: torch.Tensor) -> torch.Tensor:
        parts: list[torch.Tensor] = []
        if self.cls_token is not None:
            parts.append(self.cls_token.expand(x.shape[0], -1, -1))  # (B, 1, D)
        if self.dist_token is not None:
            parts.append(self.dist_token.expand(x.shape[0], -1, -1))  # (B, 1, D)
        if self.reg_token is not None:
            parts.append(self.reg_token.expand(x.shape[0], -1, -1))  # (B, R, D)
        parts.append(x)
        return torch.cat(parts, dim=1)  # (B, P + N, D)

    def _dynamic_pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        """The position table for a ``(gh, gw)`` grid: resampled by the weights' rule, or
        big_vision's sin-cos table computed for that grid."""
        native = self.patch_embed.grid_size
        if self.pos_embed_resample == "sincos":
            return sincos_pos_embed_for(self.pos_embed, [gh, gw], [native[0], native[1]],
                                        self.num_pos_prefix_tokens)
        return interpolate_pos_embed(self.pos_embed, [gh, gw], [native[0], native[1]],
                                     self.num_pos_prefix_tokens, self.pos_embed_resample,
                                     self.pos_embed_antialias)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Positioned tokens ``(B, P + N, D)`` and their patch grid ``(gh, gw)``."""
        x = self.patch_embed(x)  # (B, N, D), or (B, gh, gw, D) for dynamic sizes
        if self.dynamic_img_size:
            gh, gw = x.shape[1], x.shape[2]
            pos_embed = self._dynamic_pos_embed(gh, gw)
            x = x.flatten(1, 2)  # (B, N, D)
        else:
            gh, gw = self.patch_embed.grid_size[0], self.patch_embed.grid_size[1]
            pos_embed = self.pos_embed
        if self.no_embed_class:  # the table covers the patches only (DeiT III)
            x = self._add_prefix_tokens(x + pos_embed)  # (B, P + N, D)
        else:
            x = self._add_prefix_tokens(x) + pos_embed  # (B, P + N, D)
        if self.training:
            x = self.pos_drop(x)
        return self.norm_pre(x), (gh, gw)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens after the final norm: ``(B, C, H, W) -> (B, P + N, D)``."""
        x, _ = self._embed(x)
        if self.grad_checkpointing and not torch.jit.is_scripting() and torch.is_grad_enabled():
            for block in self.blocks:
                x = checkpoint(block, x, use_reentrant=False)
        else:
            x = self.blocks(x)
        out: torch.Tensor = self.norm(x)
        return out

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.attn_pool is not None:
            pooled: torch.Tensor = self.attn_pool(x)  # (B, D), attending to every token
            return pooled
        if self.global_pool == "avg":
            return x[:, self.num_prefix_tokens:].mean(dim=1)  # (B, D), patch tokens only
        if self.global_pool == "token":
            return x[:, 0]  # (B, D), the class token
        return x  # global_pool="": every token, unpooled

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the tokens of :meth:`forward_features` and classify them.

        Args:
            x: ``(B, P + N, D)`` tokens from :meth:`forward_features`.
            pre_logits: return the head's input ``(B, head_hidden_size)`` instead of logits.
        """
        x = self.pre_logits(self.fc_norm(self._pool(x)))
        if self.training:
            x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``, or pooled features when ``num_classes == 0``."""
        return self.forward_head(self.forward_features(x))

    def _run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            out: torch.Tensor = checkpoint(block, x, use_reentrant=False)
        else:
            out = block(x)
        return out

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | Sequence[int] | None = None,
        return_prefix_tokens: bool = False, norm: bool = False, stop_early: bool = False,
        output_fmt: str = "NCHW", intermediates_only: bool = False,
    ) -> Any:
        """Outputs of chosen blocks, for dense-prediction and feature-pyramid users (timm's
        method, with timm's meaning).

        Args:
            x: images ``(B, C, H, W)``.
            indices: ``None`` for every block, an int n for the last n blocks, or a sequence of
                block indices (negative counts from the end).
            return_prefix_tokens: give each intermediate as ``(patch_tokens, prefix_tokens)``
                with the ``(B, P, D)`` class/distillation tokens (models with prefix tokens).
            norm: apply the final norm to each intermediate.
            stop_early: stop after the last chosen block; the returned features are then the
                final norm of that block's output.
            output_fmt: ``"NCHW"`` gives patch tokens as ``(B, D, gh, gw)`` maps, ``"NLC"`` as
                ``(B, N, D)`` sequences.
            intermediates_only: return only the list (the blocks after the last chosen one
                are skipped, which changes nothing in the list).

        Returns:
            ``intermediates_only=True``: the list of intermediates, in block order.
            Otherwise ``(features, intermediates)``: ``features`` the final norm of the last
            block run, all tokens ``(B, P + N, D)``.
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ConfigError(f"output_fmt={output_fmt!r} is not 'NCHW' or 'NLC'")
        take, last = take_indices(len(self.blocks), indices)
        stop = last if stop_early or intermediates_only else len(self.blocks) - 1
        x, (gh, gw) = self._embed(x)
        intermediates: list[Any] = []
        for i, block in enumerate(self.blocks):
            if i > stop:
                break
            x = self._run_block(block, x)
            if i in take:
                intermediates.append(self._intermediate(x, norm, output_fmt, (gh, gw),
                                                        return_prefix_tokens))
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def _intermediate(self, x: torch.Tensor, norm: bool, output_fmt: str,
                      grid: tuple[int, int], with_prefix: bool) -> Any:
        y = self.norm(x) if norm else x
        P = self.num_prefix_tokens
        patches = y[:, P:]  # (B, N, D)
        if output_fmt == "NCHW":
            patches = patches.reshape(y.shape[0], grid[0], grid[1], -1)  # (B, gh, gw, D)
            patches = patches.permute(0, 3, 1, 2).contiguous()  # (B, D, gh, gw)
        if with_prefix and P:
            return patches, y[:, :P]  # (..., (B, P, D))
        return patches

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1,
                                  prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the blocks after the last of ``indices`` (timm's method): what a feature
        extractor over those blocks never runs.

        Args:
            indices: as in :meth:`forward_intermediates`.
            prune_norm: replace the final norm by the identity.
            prune_head: remove the head, pooling and ``fc_norm`` (``forward`` then returns
                every token).

        Returns:
            The kept block indices, sorted.
        """
        take, last = take_indices(len(self.blocks), indices)
        # a Sequential's slice is a Sequential (the stub says Sequential | Module)
        self.blocks = cast(nn.Sequential, self.blocks[:last + 1])
        self.cfg = self.cfg.replace(depth=last + 1)
        self.feature_info = self.feature_info[:last + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.fc_norm = nn.Identity()
            self.pre_logits = nn.Identity()
            self.head_hidden_size = self.embed_dim
            self._prune_head()
        return take

    def _prune_head(self) -> None:
        self.reset_classifier(0, "")

    def get_intermediate_layers(
        self, x: torch.Tensor, n: int | Sequence[int] = 1, reshape: bool = False,
        return_class_token: bool = False, norm: bool = True,
    ) -> tuple[Any, ...]:
        """DINOv2's method: the outputs of the last ``n`` blocks (or of blocks ``n``).

        Args:
            x: images ``(B, C, H, W)``.
            n: an int for the last n blocks, or block indices (negative from the end).
            reshape: patch tokens as ``(B, D, gh, gw)`` maps instead of ``(B, N, D)``.
            return_class_token: pair each output with its class token ``(B, D)``.
            norm: apply the final norm first (DINOv2's default).

        Returns:
            A tuple, in block order, of patch tokens (every prefix token removed), or of
            ``(patch_tokens, class_token)`` pairs with ``return_class_token``.
        """
        if return_class_token and self.cls_token is None:
            raise ConfigError("this model has no class token; call get_intermediate_layers "
                              "with return_class_token=False")
        outputs = self.forward_intermediates(
            x, indices=n, return_prefix_tokens=return_class_token, norm=norm,
            output_fmt="NCHW" if reshape else "NLC", intermediates_only=True)
        if return_class_token:
            return tuple((patches, prefix[:, 0]) for patches, prefix in outputs)
        return tuple(outputs)

    def attention_maps(self, x: torch.Tensor, indices: int | Sequence[int] | None = None,
                       heads: str = "all") -> list[torch.Tensor]:
        """Attention probabilities of the chosen blocks; the others keep their fast path.

        Only the chosen blocks compute the probabilities explicitly; every other block runs
        as it always does (SDPA by default), so the tokens, and every map, are those of the
        model's own forward pass.

        Args:
            x: images ``(B, C, H, W)``.
            indices: as in :meth:`forward_intermediates`.
            heads: ``"all"`` for ``(B, H, P + N, P + N)`` per block, ``"mean"`` for the
                average over heads ``(B, P + N, P + N)``.

        Returns:
            One map per chosen block, in block order; every row sums to one over the keys.
        """
        if heads not in ATTENTION_HEADS:
            raise ConfigError(f"heads={heads!r} is not one of "
                              f"{', '.join(map(repr, ATTENTION_HEADS))}")
        take, last = take_indices(len(self.blocks), indices)
        maps = []
        x, _ = self._embed(x)
        for i, block in enumerate(self.blocks):
            if i > last:
                break
            if i in take:
                x, probs = cast(Block, block).forward_with_attn(x)  # built as Blocks
                maps.append(probs.mean(dim=1) if heads == "mean" else probs)
            else:
                x = block(x)
        return maps

    def get_classifier(self) -> nn.Module:
        """The classifier head (``nn.Identity`` without one)."""
        return self.head

    def set_input_size(self, img_size: int | tuple[int, int] | None = None,
                       patch_size: int | tuple[int, int] | None = None) -> None:
        """Change the native input size and/or the patch size, permanently (timm's method).

        Learned position embeddings are resampled with the weights' rule
        (``cfg.pos_embed_resample``, as ``dynamic_img_size`` does at run time); a sin-cos
        table is recomputed. A new patch size PI-resizes the patch kernel (FlexiViT).
        ``cfg`` records the new sizes, so a saved model reloads as it is now.
        """
        changes: dict[str, Any] = {}
        if img_size is not None:
            changes["img_size"] = img_size
        if patch_size is not None:
            changes["patch_size"] = patch_size
        if not changes:
            return
        new_cfg = self.cfg.replace(**changes)
        old_grid = self.patch_embed.grid_size
        if isinstance(self.patch_embed, HybridEmbed):
            self.patch_embed.set_input_size(new_cfg.img_size, new_cfg.feature_size,
                                            patch_size=new_cfg.patch_size)
        else:
            self.patch_embed.set_input_size(new_cfg.img_size, new_cfg.patch_size)
        self.cfg = new_cfg
        new_grid = self.patch_embed.grid_size
        if new_grid != old_grid:
            if isinstance(self.pos_embed, nn.Parameter):
                with torch.no_grad():
                    table = interpolate_pos_embed(
                        self.pos_embed, list(new_grid), list(old_grid),
                        self.num_pos_prefix_tokens,
                        new_cfg.pos_embed_resample, new_cfg.pos_embed_antialias)
                self.pos_embed = nn.Parameter(table, requires_grad=self.pos_embed.requires_grad)
            else:
                reference = self.pos_embed
                self._build_pos_embed(new_cfg)
                self.pos_embed = self.pos_embed.to(reference)
        self.feature_info = self._feature_info()
        if self.pretrained_cfg:
            self.pretrained_cfg = {**self.pretrained_cfg,
                                   "input_size": (new_cfg.in_chans, *new_cfg.img_size)}

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
        self.train(self.training)  # new modules follow the model's mode

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
        names = {"pos_embed", "cls_token", "dist_token", "reg_token"}
        return {name for name, _ in self.named_parameters() if name in names}

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Regexes grouping parameters by depth (timm's format, for layer-wise lr decay)."""
        return {
            "stem": r"^cls_token|^dist_token|^reg_token|^pos_embed|^patch_embed",
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
    if head.bias is not None:
        nn.init.zeros_(head.bias)
