"""DeiT III (Touvron et al., "DeiT III: Revenge of the ViT", ECCV 2022), with timm's names and
the original builders' names (``deit_small_patch16_LS`` ...) as aliases of the 224 models.

LayerScale on both branches and a position table without a class-token row
(``no_embed_class``): the class token is put in front after the patches are positioned.
"""

from __future__ import annotations

from ...config import SIZES, ViTConfig
from .arch import SIZE_NAMES, Arch

__all__ = ["ARCHS"]

_MEDIUM = ViTConfig(embed_dim=512, depth=12, num_heads=8, mlp_dim=2048)
# (size, patch, image)
_TABLE: tuple[tuple[str, int, int], ...] = (
    ("S", 16, 224), ("S", 16, 384), ("M", 16, 224), ("B", 16, 224), ("B", 16, 384),
    ("L", 16, 224), ("L", 16, 384), ("H", 14, 224),
)
_WORDS = {**SIZE_NAMES, "M": "medium"}


def _arch(size: str, patch: int, img: int) -> Arch:
    base = _MEDIUM if size == "M" else SIZES[size]
    word = _WORDS[size]
    aliases = (f"deit_{word}_patch{patch}_LS",) if img == 224 else ()
    return Arch(
        f"deit3_{word}_patch{patch}_{img}",
        base.replace(patch_size=patch, img_size=img, no_embed_class=True, init_values=1e-6),
        f"DeiT III ViT-{size}/{patch} at {img}x{img} (Touvron et al., 2022).", aliases)


ARCHS: tuple[Arch, ...] = tuple(_arch(*row) for row in _TABLE)
