"""The registered ViT and DeiT architectures, their short aliases and the original names.

Every builder is ``name(**overrides) -> VisionTransformer``: a size from the table plus the
patch and image size, with keyword overrides of any :class:`vitzoo.ViTConfig` field.
"""

from __future__ import annotations

from typing import Any

from ..config import SIZES
from ..registry import register_alias, register_model
from . import build_model
from .vision_transformer import VisionTransformer

# (name, size, patch, image) - timm's names; parameter counts are in models.md.
VIT_ARCHS: tuple[tuple[str, str, int, int], ...] = (
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

# (name, size, image, distilled)
DEIT_ARCHS: tuple[tuple[str, str, int, bool], ...] = (
    ("deit_tiny_patch16_224", "Ti", 224, False),
    ("deit_small_patch16_224", "S", 224, False),
    ("deit_base_patch16_224", "B", 224, False),
    ("deit_base_patch16_384", "B", 384, False),
    ("deit_tiny_distilled_patch16_224", "Ti", 224, True),
    ("deit_small_distilled_patch16_224", "S", 224, True),
    ("deit_base_distilled_patch16_224", "B", 224, True),
    ("deit_base_distilled_patch16_384", "B", 384, True),
)

# (name, size, backbone stages, patch on the feature map, image): Google's R+ViT hybrids.
HYBRID_ARCHS: tuple[tuple[str, str, tuple[int, ...], int, int], ...] = (
    ("vit_tiny_r_s16_p8_224", "Ti", (), 8, 224),
    ("vit_tiny_r_s16_p8_384", "Ti", (), 8, 384),
    ("vit_small_r26_s32_224", "S", (2, 2, 2, 2), 1, 224),
    ("vit_small_r26_s32_384", "S", (2, 2, 2, 2), 1, 384),
    ("vit_base_r50_s16_224", "B", (3, 4, 9), 1, 224),
    ("vit_base_r50_s16_384", "B", (3, 4, 9), 1, 384),
)

# Google's config names of the hybrids (vit_jax/configs/models.py).
HYBRID_ORIGINAL_NAMES = {
    "R50-ViT-B_16": "vit_base_r50_s16_224",
    "R50+ViT-B_16": "vit_base_r50_s16_224",
    "R26+ViT-S_32": "vit_small_r26_s32_224",
    "R+ViT-Ti_16": "vit_tiny_r_s16_p8_224",
}

_SHORT = {"Ti": "ti", "S": "s", "B": "b", "L": "l", "H": "h"}


def _define(name: str, size: str, base: dict[str, Any], summary: str) -> None:
    def builder(**overrides: Any) -> VisionTransformer:
        return build_model(SIZES[size].replace(**{**base, **overrides}))

    builder.__name__ = builder.__qualname__ = name
    builder.__module__ = __name__
    builder.__doc__ = (
        f"{summary}\n\nArgs:\n    **overrides: any ViTConfig field, e.g. num_classes=10, "
        "img_size=384, drop_path_rate=0.1.\n"
    )
    globals()[name] = register_model(builder)


for _name, _size, _patch, _img in VIT_ARCHS:
    _define(_name, _size, {"patch_size": _patch, "img_size": _img},
            f"ViT-{_size}/{_patch} at {_img}x{_img} (Dosovitskiy et al., 2021).")
    _suffix = "" if _img == 224 else f"_{_img}"
    register_alias(f"vit_{_SHORT[_size]}{_patch}{_suffix}", _name)
    if _img == 224:
        register_alias(f"ViT-{_size}_{_patch}", _name)  # the original release's names

for _name, _size, _img, _distilled in DEIT_ARCHS:
    _define(_name, _size, {"patch_size": 16, "img_size": _img, "distilled": _distilled},
            f"DeiT-{_size}/16{' distilled' if _distilled else ''} at {_img}x{_img} "
            "(Touvron et al., 2021).")
    _dist = "_distilled" if _distilled else ""
    _suffix = "" if _img == 224 else f"_{_img}"
    register_alias(f"deit_{_SHORT[_size]}16{_dist}{_suffix}", _name)

for _name, _size, _layers, _patch, _img in HYBRID_ARCHS:
    _stem = "stem only" if not _layers else f"ResNet stages {_layers}"
    _define(_name, _size, {"patch_size": _patch, "img_size": _img, "backbone_layers": _layers},
            f"R+ViT-{_size} hybrid ({_stem}, patch {_patch}) at {_img}x{_img} "
            "(Dosovitskiy et al., 2021).")
for _alias, _name in HYBRID_ORIGINAL_NAMES.items():
    register_alias(_alias, _name)
