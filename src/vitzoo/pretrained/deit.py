"""Pretrained tags of the DeiT architectures (facebookresearch/deit, via timm's names).

The first tag of each architecture is its default.
"""

from __future__ import annotations

_ARCHS = (
    "deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224",
    "deit_base_patch16_384", "deit_tiny_distilled_patch16_224",
    "deit_small_distilled_patch16_224", "deit_base_distilled_patch16_224",
    "deit_base_distilled_patch16_384",
)

TAGS: dict[str, tuple[str, ...]] = {arch: ("fb_in1k",) for arch in _ARCHS}

# tag -> (num_classes, preprocessing family)
TAG_INFO: dict[str, tuple[int | None, str | None]] = {"fb_in1k": (1000, "imagenet")}
