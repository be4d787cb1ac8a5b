"""Google's R+ViT hybrids (Dosovitskiy et al., 2021, §3.1), with timm's names and the
original release's config names (``vit_jax/configs/models.py``) as aliases."""

from __future__ import annotations

from ...config import SIZES
from .arch import Arch

__all__ = ["ARCHS"]

# (name, size, backbone stages, patch on the feature map, image, original names)
_TABLE: tuple[tuple[str, str, tuple[int, ...], int, int, tuple[str, ...]], ...] = (
    ("vit_tiny_r_s16_p8_224", "Ti", (), 8, 224, ("R+ViT-Ti_16",)),
    ("vit_tiny_r_s16_p8_384", "Ti", (), 8, 384, ()),
    ("vit_small_r26_s32_224", "S", (2, 2, 2, 2), 1, 224, ("R26+ViT-S_32",)),
    ("vit_small_r26_s32_384", "S", (2, 2, 2, 2), 1, 384, ()),
    ("vit_base_r50_s16_224", "B", (3, 4, 9), 1, 224, ("R50-ViT-B_16", "R50+ViT-B_16")),
    ("vit_base_r50_s16_384", "B", (3, 4, 9), 1, 384, ()),
)


def _summary(size: str, layers: tuple[int, ...], patch: int, img: int) -> str:
    stem = "stem only" if not layers else f"ResNet stages {layers}"
    return (f"R+ViT-{size} hybrid ({stem}, patch {patch}) at {img}x{img} "
            "(Dosovitskiy et al., 2021).")


ARCHS: tuple[Arch, ...] = tuple(
    Arch(name, SIZES[size].replace(patch_size=patch, img_size=img, backbone_layers=layers),
         _summary(size, layers, patch, img), aliases)
    for name, size, layers, patch, img, aliases in _TABLE
)
