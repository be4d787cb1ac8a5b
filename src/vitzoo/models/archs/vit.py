"""The plain ViT architectures (Dosovitskiy et al., 2021), with timm's names.

Parameter counts are in ../shared/reference/models.md; the tests check them.
"""

from __future__ import annotations

from ...config import SIZES
from .arch import SHORT_NAMES, Arch

__all__ = ["ARCHS"]

# (name, size, patch, image)
_TABLE: tuple[tuple[str, str, int, int], ...] = (
    ("vit_tiny_patch16_224", "Ti", 16, 224),
    ("vit_tiny_patch16_384", "Ti", 16, 384),
    ("vit_small_patch32_224", "S", 32, 224),
    ("vit_small_patch32_384", "S", 32, 384),
    ("vit_small_patch16_224", "S", 16, 224),
    ("vit_small_patch16_384", "S", 16, 384),
    ("vit_small_patch8_224", "S", 8, 224),
    ("vit_base_patch32_224", "B", 32, 224),
    ("vit_base_patch32_384", "B", 32, 384),
    ("vit_base_patch16_224", "B", 16, 224),
    ("vit_base_patch16_384", "B", 16, 384),
    ("vit_base_patch8_224", "B", 8, 224),
    ("vit_large_patch32_224", "L", 32, 224),
    ("vit_large_patch32_384", "L", 32, 384),
    ("vit_large_patch16_224", "L", 16, 224),
    ("vit_large_patch16_384", "L", 16, 384),
    ("vit_large_patch14_224", "L", 14, 224),
    ("vit_huge_patch14_224", "H", 14, 224),
)


def _aliases(size: str, patch: int, img: int) -> tuple[str, ...]:
    """``vit_b16`` / ``vit_b16_384``, and the original release's ``ViT-B_16`` at 224."""
    short = f"vit_{SHORT_NAMES[size]}{patch}" + ("" if img == 224 else f"_{img}")
    return (short, f"ViT-{size}_{patch}") if img == 224 else (short,)


ARCHS: tuple[Arch, ...] = tuple(
    Arch(name, SIZES[size].replace(patch_size=patch, img_size=img),
         f"ViT-{size}/{patch} at {img}x{img} (Dosovitskiy et al., 2021).",
         _aliases(size, patch, img))
    for name, size, patch, img in _TABLE
)
