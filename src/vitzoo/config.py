"""The frozen model configuration and the size table of the ViT paper.

Sizes follow Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021), Table 1, with
Ti and S from Touvron et al., "Training data-efficient image transformers" (ICML 2021).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from ._utils import suggestion
from .errors import ConfigError, UnknownOverrideError
from .layers import ATTN_IMPLS, INIT_MODES, RESAMPLE_MODES, patch_grid

__all__ = ["ACT_LAYERS", "ATTN_IMPLS", "GELU_APPROXIMATIONS", "GLOBAL_POOLS", "MAX_DEPTH",
           "MAX_GRID_TOKENS", "MAX_PARAM_BYTES", "MLP_LAYERS", "POS_EMBEDS", "RESAMPLE_MODES",
           "SIZES", "WEIGHT_INITS", "ViTConfig", "check_field_names", "estimate_num_params"]

GLOBAL_POOLS = ("token", "avg", "map", "")
POS_EMBEDS = ("learn", "sincos")
GELU_APPROXIMATIONS = ("none", "tanh")
ACT_LAYERS = ("gelu", "quick_gelu")
MLP_LAYERS = ("mlp", "swiglu")
WEIGHT_INITS = INIT_MODES


# Limits on what a config may ask for, checked before anything is allocated (docs/models.md).
# The largest registered model (ViT-bigG/14, 1.8 billion parameters) needs 7.4 GB.
MAX_PARAM_BYTES = 64 * 2**30
"""The most float32 parameter (and position-table) bytes a config may describe: 64 GiB, about
17 billion parameters."""
MAX_DEPTH = 1024
"""The most transformer blocks (and the most units of a hybrid's ResNet stages)."""
MAX_GRID_TOKENS = 2**20
"""The most patch tokens at ``img_size`` (a 1024 x 1024 grid: 16384 px with 16 px patches)."""

_FLOAT32_MAX = 3.4028234663852886e38
_BOOL_FIELDS = ("qkv_bias", "class_token", "distilled", "fc_norm", "dynamic_img_size",
                "dynamic_img_pad", "pos_embed_antialias", "no_embed_class", "pre_norm",
                "patch_bias", "qk_norm", "head_bias")
# int fields: the smallest valid value (MAX_DEPTH and the memory estimate bound them above)
_INT_FIELDS = {"in_chans": 1, "num_classes": 0, "embed_dim": 1, "depth": 1, "num_heads": 1,
               "reg_tokens": 0, "backbone_width": 1}
_OPTIONAL_INT_FIELDS = ("mlp_dim", "representation_size")
_RATE_FIELDS = ("drop_rate", "pos_drop_rate", "proj_drop_rate", "attn_drop_rate",
                "drop_path_rate")
_STR_FIELDS = ("global_pool", "pos_embed", "gelu_approximate", "weight_init", "attn_impl",
               "pos_embed_resample", "act_layer", "mlp_layer")


def _is_int(value: object) -> TypeGuard[numbers.Integral]:
    # numpy integers count (shapes read off arrays); bools do not, though Python says they are
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> TypeGuard[numbers.Real]:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _int(value: object, name: str, minimum: int, nullable: bool = False) -> int:
    if not _is_int(value) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ConfigError(f"{name} must be {kind}{' or None' if nullable else ''}, got "
                          f"{value!r} ({type(value).__name__})")
    return int(value)


def _float(value: object, name: str, nullable: bool = False) -> float:
    if not _is_real(value) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number{' or None' if nullable else ''}, "
                          f"got {value!r} ({type(value).__name__})")
    return float(value)


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if _is_int(value):
        pair = (int(value), int(value))
    elif (isinstance(value, Sequence) and not isinstance(value, (str, bytes))
          and len(value) == 2 and all(_is_int(v) for v in value)):
        pair = (int(value[0]), int(value[1]))
    else:
        raise ConfigError(f"{name} must be an int or a (height, width) pair of ints, got "
                          f"{value!r} ({type(value).__name__})")
    if min(pair) < 1:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return pair


def _choice(value: str, name: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, allowed))}")


@dataclass(frozen=True)
class ViTConfig:
    """Everything that defines a Vision Transformer's architecture and numerics.

    ``img_size`` and ``patch_size`` accept an int or a ``(height, width)`` pair and are stored as
    pairs. Build variants with :meth:`replace`, which rejects unknown field names.

    Numerics fields record the framework the weights come from: Google's JAX checkpoints use
    ``gelu_approximate="tanh"`` and ``norm_eps=1e-6``; PyTorch-trained weights (DeiT, timm)
    use the exact erf GELU (``"none"``).
    """

    img_size: tuple[int, int] = (224, 224)
    patch_size: tuple[int, int] = (16, 16)
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int | None = None
    """Hidden width of the MLP; ``None`` means ``4 * embed_dim``."""
    qkv_bias: bool = True
    class_token: bool = True
    distilled: bool = False
    """DeiT's distillation token and second head (``dist_token``, ``head_dist``)."""
    global_pool: str = "token"
    """``"token"`` (class token), ``"avg"`` (mean of the patch tokens), ``"map"`` (attention
    pooling with one learned query over all tokens, big_vision's MAP head) or ``""`` (no
    pooling: ``forward_head`` keeps every token, timm's pass-through)."""
    fc_norm: bool = False
    """False: final norm on all tokens, then pool (Google). True: pool, then ``fc_norm`` (timm)."""
    representation_size: int | None = None
    """Width of the ``pre_logits`` Linear + tanh layer of Google's 21k checkpoints."""
    pos_embed: str = "learn"
    """``"learn"`` (a parameter) or ``"sincos"`` (big_vision's fixed 2-D table, not stored)."""
    init_values: float | None = None
    """LayerScale initial value; ``None`` means no LayerScale."""
    gelu_approximate: str = "none"
    """``"none"`` (exact erf, PyTorch) or ``"tanh"`` (JAX's default)."""
    norm_eps: float = 1e-6
    drop_rate: float = 0.0
    """Dropout before the classifier head."""
    pos_drop_rate: float = 0.0
    proj_drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    """Stochastic depth of the last block; block i gets ``rate * i / (depth - 1)``."""
    weight_init: str = "timm"
    """``"timm"`` (trunc-normal 0.02) or ``"jax"`` (Google's initialisers, zero head)."""
    attn_impl: str = "sdpa"
    """``"sdpa"`` (``F.scaled_dot_product_attention``) or ``"math"`` (explicit softmax)."""
    backbone_layers: tuple[int, ...] | None = None
    """Hybrid ResNet stages, e.g. ``(3, 4, 9)`` for R50; ``()`` is the stem only; ``None``: no
    hybrid (plain patch embedding)."""
    backbone_width: int = 64
    """Channels of the hybrid's stem (64 times Google's width factor)."""
    dynamic_img_size: bool = False
    """Accept any input height and width: the position embeddings are resampled at run time to
    the input's patch grid (``pos_embed_resample``); at ``img_size`` nothing is resampled."""
    dynamic_img_pad: bool = False
    """Pad the input (zeros, right and bottom) to a multiple of the patch size, so any size
    works with ``dynamic_img_size``; the grid is rounded up."""
    pos_embed_resample: str = "bicubic"
    """How learned position embeddings are resized at run time (``dynamic_img_size``) and by
    :meth:`VisionTransformer.set_input_size`: ``"bicubic"`` / ``"bilinear"`` (timm's rule,
    ``F.interpolate`` with ``align_corners=False``), ``"dinov2"`` (DINOv2's plain models:
    bicubic with scale factors ``(grid + 0.1) / M``, no antialias), ``"dinov2_reg"`` (DINOv2
    with registers: bicubic to the grid, antialiased) or ``"scipy"`` (Google's
    ``ndimage.zoom(order=1)``, computed as bilinear with ``align_corners=True``, which is the
    same function). Models built from weights take the rule of the weights' origin."""
    pos_embed_antialias: bool = True
    """Antialias bicubic/bilinear run-time resampling when the grid shrinks (timm's default)."""
    reg_tokens: int = 0
    """Register tokens (Darcet et al., "Vision Transformers Need Registers", ICLR 2024):
    ``reg_token (1, R, D)``, placed after the class (and distillation) token; they are prefix
    tokens, removed from patch outputs like the class token."""
    no_embed_class: bool = False
    """The position table covers the patches only (``(1, N, D)``) and is added before the
    prefix tokens are put in front (DeiT III, DINOv2 with registers in timm's layout)."""
    pre_norm: bool = False
    """A LayerNorm (``norm_pre``) on the positioned tokens before the first block (CLIP's
    ``ln_pre``)."""
    patch_bias: bool = True
    """Whether the patch projection has a bias (CLIP's ``conv1`` has none)."""
    act_layer: str = "gelu"
    """The MLP activation: ``"gelu"`` (its form set by ``gelu_approximate``) or
    ``"quick_gelu"`` (``x * sigmoid(1.702 x)``, OpenAI's CLIP)."""
    mlp_layer: str = "mlp"
    """``"mlp"`` (Linear, activation, Linear) or ``"swiglu"`` (``fc2(silu(a) * b)`` with
    ``[a; b] = fc1(x)``: fc1 has ``2 * mlp_dim`` outputs; DINOv2 ViT-g)."""
    qk_norm: bool = False
    """LayerNorm over each head's queries and keys (``attn.q_norm``, ``attn.k_norm``)."""
    head_bias: bool = True
    """Whether the classifier head has a bias (timm keeps a zero one for CLIP's projection)."""

    def __post_init__(self) -> None:
        self._check_types()
        if self.embed_dim % self.num_heads:
            raise ConfigError(
                f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}"
            )
        if self.backbone_layers is None and any(
            i < p for i, p in zip(self.img_size, self.patch_size, strict=True)
        ):
            raise ConfigError(
                f"img_size={self.img_size} is smaller than patch_size={self.patch_size}"
            )
        _choice(self.global_pool, "global_pool", GLOBAL_POOLS)
        _choice(self.pos_embed, "pos_embed", POS_EMBEDS)
        _choice(self.gelu_approximate, "gelu_approximate", GELU_APPROXIMATIONS)
        _choice(self.weight_init, "weight_init", WEIGHT_INITS)
        _choice(self.attn_impl, "attn_impl", ATTN_IMPLS)
        _choice(self.pos_embed_resample, "pos_embed_resample", RESAMPLE_MODES)
        _choice(self.act_layer, "act_layer", ACT_LAYERS)
        _choice(self.mlp_layer, "mlp_layer", MLP_LAYERS)
        self._check_family_knobs()
        if self.global_pool == "token" and not self.class_token:
            raise ConfigError(
                "global_pool='token' needs class_token=True; use global_pool='avg' without one"
            )
        if self.distilled and not (self.class_token and self.global_pool == "token"):
            raise ConfigError("distilled=True needs class_token=True and global_pool='token'")
        if self.global_pool == "map" and self.fc_norm:
            raise ConfigError("global_pool='map' does not use fc_norm; leave fc_norm=False")
        if self.distilled and (self.fc_norm or self.representation_size):
            raise ConfigError("distilled=True does not support fc_norm or representation_size")
        if self.pos_embed == "sincos" and (self.embed_dim % 4 or self.embed_dim < 8):
            raise ConfigError(
                f"pos_embed='sincos' needs embed_dim divisible by 4 and >= 8, got {self.embed_dim}"
            )
        if self.backbone_layers is not None:
            if self.backbone_width < 32 or self.backbone_width % 32:
                raise ConfigError(
                    f"backbone_width must be a positive multiple of 32 (GroupNorm uses 32 "
                    f"groups), got {self.backbone_width}"
                )
            if any(f < p for f, p in zip(self.feature_size, self.patch_size, strict=True)):
                raise ConfigError(
                    f"img_size={self.img_size} gives a {self.feature_size} feature map, smaller "
                    f"than patch_size={self.patch_size}"
                )
        self._check_size()

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def _check_types(self) -> None:
        """Every field of the right type and range, stored as a plain Python value (a numpy
        int becomes an int); a bool is not taken for an int, nor an int for a bool."""
        self._set("img_size", _pair(self.img_size, "img_size"))
        self._set("patch_size", _pair(self.patch_size, "patch_size"))
        for name, minimum in _INT_FIELDS.items():
            self._set(name, _int(getattr(self, name), name, minimum))
        for name in _OPTIONAL_INT_FIELDS:
            if getattr(self, name) is not None:
                self._set(name, _int(getattr(self, name), name, 1, nullable=True))
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r} "
                                  f"({type(getattr(self, name)).__name__})")
        for name in _RATE_FIELDS:
            value = _float(getattr(self, name), name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
            self._set(name, value)
        eps = _float(self.norm_eps, "norm_eps")
        if not eps > 0:
            raise ConfigError(f"norm_eps must be positive, got {self.norm_eps!r}")
        self._set("norm_eps", eps)
        if self.init_values is not None:
            value = _float(self.init_values, "init_values", nullable=True)
            if abs(value) > _FLOAT32_MAX:
                raise ConfigError(f"init_values={value!r} does not fit a float32")
            self._set("init_values", value)
        for name in _STR_FIELDS:
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.depth > MAX_DEPTH:
            raise ConfigError(f"depth={self.depth} is over the limit of {MAX_DEPTH} blocks "
                              "(vitzoo.config.MAX_DEPTH)")
        layers = self.backbone_layers
        if layers is not None:
            if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not all(
                _is_int(n) and int(n) > 0 for n in layers
            ):
                raise ConfigError(
                    f"backbone_layers must be a sequence of positive ints (or None), got "
                    f"{layers!r}"
                )
            if sum(layers) > MAX_DEPTH or len(layers) > 8:
                raise ConfigError(f"backbone_layers={tuple(layers)} is over the limit of 8 "
                                  f"stages and {MAX_DEPTH} units (vitzoo.config.MAX_DEPTH)")
            self._set("backbone_layers", tuple(int(n) for n in layers))

    def _check_size(self) -> None:
        """Refuse, before anything is allocated, a config too large for any machine."""
        tokens = self.num_patches
        if tokens > MAX_GRID_TOKENS:
            raise ConfigError(
                f"img_size={self.img_size} with patch_size={self.patch_size} gives "
                f"{tokens:,} patch tokens, over the limit of {MAX_GRID_TOKENS:,} "
                "(vitzoo.config.MAX_GRID_TOKENS); use a smaller image or a larger patch")
        params = estimate_num_params(self)
        if 4 * params > MAX_PARAM_BYTES:
            raise ConfigError(
                f"this config describes about {params:,} parameters ({4 * params / 2**30:,.1f} "
                f"GiB in float32: embed_dim={self.embed_dim}, depth={self.depth}, "
                f"mlp_dim={self.mlp_hidden_dim}, num_classes={self.num_classes}, "
                f"{tokens:,} patch tokens, in_chans={self.in_chans}), over the limit of "
                f"{MAX_PARAM_BYTES / 2**30:g} GiB (vitzoo.config.MAX_PARAM_BYTES)")

    def _check_family_knobs(self) -> None:
        """The fields of the modern families (registers, CLIP's pre-norm, SwiGLU ...)."""
        if self.mlp_layer == "swiglu" and self.act_layer != "gelu":
            raise ConfigError("mlp_layer='swiglu' gates with SiLU; leave act_layer='gelu'")
        if self.backbone_layers is not None and not self.patch_bias:
            raise ConfigError("patch_bias=False applies to plain patch embeddings, not hybrids")
        if self.pos_embed == "sincos" and self.no_embed_class:
            raise ConfigError("no_embed_class applies to learned position embeddings; a sin-cos "
                              "table already has no rows for the prefix tokens")

    # -- derived sizes ---------------------------------------------------------------------
    @property
    def mlp_hidden_dim(self) -> int:
        """The MLP's hidden width: ``mlp_dim`` or ``4 * embed_dim``."""
        return self.mlp_dim if self.mlp_dim is not None else 4 * self.embed_dim

    @property
    def feature_size(self) -> tuple[int, int]:
        """The map the patches are cut from: the image, or the hybrid backbone's output.

        Every stride-2 layer of the hybrid uses TF "SAME" padding: ``out = ceil(in / 2)``; the
        stem has two (conv and max-pool), every stage after the first one more.
        """
        if self.backbone_layers is None:
            return self.img_size
        halvings = 2 + max(len(self.backbone_layers) - 1, 0)
        size = list(self.img_size)
        for _ in range(halvings):
            size = [-(-s // 2) for s in size]
        return (size[0], size[1])

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid ``(gh, gw)``; rows and columns left over by the patch are dropped (or padded
    to a whole patch with ``dynamic_img_pad``)."""
        return patch_grid(self.feature_size, self.patch_size, self.dynamic_img_pad)

    @property
    def num_patches(self) -> int:
        gh, gw = self.grid_size
        return gh * gw

    @property
    def num_prefix_tokens(self) -> int:
        """Class, distillation and register tokens in front of the patch tokens."""
        return int(self.class_token) + int(self.distilled) + self.reg_tokens

    @property
    def num_pos_prefix_tokens(self) -> int:
        """Rows of the position table for prefix tokens: none with ``no_embed_class``."""
        return 0 if self.no_embed_class else self.num_prefix_tokens

    # -- variants and serialisation ----------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **overrides: Any) -> ViTConfig:
        """A copy with ``overrides`` applied; an unknown field name raises at once."""
        check_field_names(overrides)
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (pairs become lists)."""
        data = dataclasses.asdict(self)
        data["img_size"] = list(self.img_size)
        data["patch_size"] = list(self.patch_size)
        if self.backbone_layers is not None:
            data["backbone_layers"] = list(self.backbone_layers)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ViTConfig:
        """Rebuild a config written by :meth:`to_dict`; unknown keys raise."""
        check_field_names(data)
        return cls(**dict(data))


def _backbone_params(cfg: ViTConfig) -> tuple[int, int]:
    """About the parameters of a hybrid's ResNet (stem, bottleneck units, GroupNorms) and its
    output channels."""
    width = cfg.backbone_width
    params, channels = cfg.in_chans * width * 49 + 2 * width, width
    for s, units in enumerate(cfg.backbone_layers or ()):
        mid = width * 2**s
        out = 4 * mid
        params += channels * out + 2 * out  # the first unit's projection shortcut
        params += channels * mid + (units - 1) * out * mid  # the units' first 1x1
        params += units * (9 * mid * mid + mid * out + 4 * mid + 2 * out)  # 3x3, 1x1, norms
        channels = out
    return params, channels


def estimate_num_params(cfg: ViTConfig) -> int:
    """About how many parameters a model built from ``cfg`` has (position table included, also
    a fixed sin-cos one), computed from the config alone: what the memory limit
    (:data:`MAX_PARAM_BYTES`) is checked against before anything is built."""
    d, hidden = cfg.embed_dim, cfg.mlp_hidden_dim
    ph, pw = cfg.patch_size
    if cfg.backbone_layers is None:
        params, channels = 0, cfg.in_chans
    else:
        params, channels = _backbone_params(cfg)
    params += channels * ph * pw * d + d  # the patch projection
    params += (cfg.num_patches + cfg.num_prefix_tokens) * d  # tokens and position table
    head_dim = d // cfg.num_heads
    fc1 = hidden * (2 if cfg.mlp_layer == "swiglu" else 1)
    block = (4 * d * d + 4 * d  # qkv and proj
             + d * fc1 + fc1 + hidden * d + d  # the MLP
             + 4 * d + 2 * d + 4 * head_dim)  # norms, LayerScale, q/k norms
    params += cfg.depth * block + 4 * d  # final norms
    if cfg.global_pool == "map":
        params += 4 * d * d + 2 * d * 4 * d + 12 * d
    features = d
    if cfg.representation_size:
        params += d * cfg.representation_size + cfg.representation_size
        features = cfg.representation_size
    heads = 2 if cfg.distilled else 1
    params += heads * cfg.num_classes * (features + 1)
    return params


def check_field_names(names: Mapping[str, Any] | Sequence[str]) -> None:
    """Raise :class:`UnknownOverrideError` naming every key that is not a config field."""
    valid = ViTConfig.field_names()
    unknown = [name for name in names if name not in valid]
    if not unknown:
        return
    hints = "".join(suggestion(name, valid) for name in unknown)
    raise UnknownOverrideError(
        f"unknown config field(s) {', '.join(map(repr, unknown))}.{hints} "
        f"Valid fields: {', '.join(valid)}."
    )


# The paper's sizes (Table 1 of the ViT paper; Ti and S from DeiT). Builders pick one and set
# the patch and image size.
SIZES: dict[str, ViTConfig] = {
    "Ti": ViTConfig(embed_dim=192, depth=12, num_heads=3, mlp_dim=768),
    "S": ViTConfig(embed_dim=384, depth=12, num_heads=6, mlp_dim=1536),
    "B": ViTConfig(embed_dim=768, depth=12, num_heads=12, mlp_dim=3072),
    "L": ViTConfig(embed_dim=1024, depth=24, num_heads=16, mlp_dim=4096),
    "H": ViTConfig(embed_dim=1280, depth=32, num_heads=16, mlp_dim=5120),
}
