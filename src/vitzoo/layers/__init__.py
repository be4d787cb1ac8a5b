"""Building blocks of the Vision Transformer, one concept per module."""

from .attention import Attention
from .attention_pool import AttentionPool
from .block import Block
from .drop_path import DropPath, drop_path
from .layer_scale import LayerScale
from .mlp import Mlp
from .patch_embed import PatchEmbed
from .pos_embed import sincos_2d_pos_embed

__all__ = [
    "Attention",
    "AttentionPool",
    "Block",
    "DropPath",
    "LayerScale",
    "Mlp",
    "PatchEmbed",
    "drop_path",
    "sincos_2d_pos_embed",
]
