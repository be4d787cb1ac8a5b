"""Building blocks of the Vision Transformer, one concept per module.

The layers are standalone: they import nothing of vitzoo but :mod:`vitzoo.errors`, and every
one that has parameters owns ``init_weights(mode)`` for the ``"timm"`` and ``"jax"`` schemes.
"""

from .attention import ATTN_IMPLS, Attention, attention_probs, scaled_dot_product
from .attention_pool import AttentionPool
from .block import Block
from .bottleneck import Bottleneck, Downsample, ResNetStage, stem_layers
from .drop_path import DropPath, drop_path
from .feature_pyramid import SimpleFeaturePyramid
from .helpers import layer_norm, patch_grid, to_2tuple
from .hybrid_embed import HybridEmbed
from .layer_scale import LayerScale
from .mlp import Mlp, QuickGELU, SwiGLU
from .patch_embed import PatchEmbed, check_image, resample_patch_kernel
from .pos_embed import (
    RESAMPLE_MODES,
    interpolate_pos_embed,
    is_exporting,
    resample_pos_embed,
    sincos_2d_pos_embed,
    sincos_pos_embed_for,
)
from .std_conv import MaxPool2dSame, StdConv2dSame
from .weight_init import INIT_MODES, check_init_mode, init_linear_, lecun_normal_
from .workspace import release_workspace, set_workspace_limit, workspace_bytes

__all__ = [
    "ATTN_IMPLS",
    "INIT_MODES",
    "RESAMPLE_MODES",
    "Attention",
    "AttentionPool",
    "Block",
    "Bottleneck",
    "Downsample",
    "DropPath",
    "HybridEmbed",
    "LayerScale",
    "MaxPool2dSame",
    "Mlp",
    "PatchEmbed",
    "QuickGELU",
    "ResNetStage",
    "SimpleFeaturePyramid",
    "StdConv2dSame",
    "SwiGLU",
    "attention_probs",
    "check_image",
    "check_init_mode",
    "drop_path",
    "init_linear_",
    "interpolate_pos_embed",
    "is_exporting",
    "layer_norm",
    "lecun_normal_",
    "patch_grid",
    "release_workspace",
    "resample_patch_kernel",
    "resample_pos_embed",
    "scaled_dot_product",
    "set_workspace_limit",
    "sincos_2d_pos_embed",
    "sincos_pos_embed_for",
    "stem_layers",
    "to_2tuple",
    "workspace_bytes",
]
