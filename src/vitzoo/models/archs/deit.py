"""DeiT, with and without the distillation token (Touvron et al., 2021), with timm's names."""

from __future__ import annotations

from ...config import SIZES
from .arch import SHORT_NAMES, Arch

__all__ = ["ARCHS"]

# (name, size, image, distilled)
_TABLE: tuple[tuple[str, str, int, bool], ...] = (
    ("deit_tiny_patch16_224", "Ti", 224, False),
    ("deit_small_patch16_224", "S", 224, False),
    ("deit_base_patch16_224", "B", 224, False),
    ("deit_base_patch16_384", "B", 384, False),
    ("deit_tiny_distilled_patch16_224", "Ti", 224, True),
    ("deit_small_distilled_patch16_224", "S", 224, True),
    ("deit_base_distilled_patch16_224", "B", 224, True),
    ("deit_base_distilled_patch16_384", "B", 384, True),
)


def _alias(size: str, img: int, distilled: bool) -> str:
    """``deit_ti16``, ``deit_b16_distilled_384`` ..."""
    return (f"deit_{SHORT_NAMES[size]}16" + ("_distilled" if distilled else "")
            + ("" if img == 224 else f"_{img}"))


ARCHS: tuple[Arch, ...] = tuple(
    Arch(name, SIZES[size].replace(patch_size=16, img_size=img, distilled=distilled),
         f"DeiT-{size}/16{' distilled' if distilled else ''} at {img}x{img} "
         "(Touvron et al., 2021).",
         (_alias(size, img, distilled),))
    for name, size, img, distilled in _TABLE
)
