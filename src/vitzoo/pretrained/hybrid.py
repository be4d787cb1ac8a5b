"""Pretrained tags of Google's R+ViT hybrids (models.md; timm 1.0.31's names).

The first tag of each architecture is its default.
"""

from __future__ import annotations

TAGS: dict[str, tuple[str, ...]] = {
    "vit_tiny_r_s16_p8_224": ("augreg_in21k_ft_in1k", "augreg_in21k"),
    "vit_tiny_r_s16_p8_384": ("augreg_in21k_ft_in1k",),
    "vit_small_r26_s32_224": ("augreg_in21k_ft_in1k", "augreg_in21k"),
    "vit_small_r26_s32_384": ("augreg_in21k_ft_in1k",),
    "vit_base_r50_s16_224": ("orig_in21k",),
    "vit_base_r50_s16_384": ("orig_in21k_ft_in1k",),
}

# tag -> (num_classes, preprocessing family)
TAG_INFO: dict[str, tuple[int | None, str | None]] = {
    "augreg_in21k_ft_in1k": (1000, "google"),
    "augreg_in21k": (21843, "google"),
    "orig_in21k": (0, "google"),  # Google zeroed the 21k head of R50+ViT-B/16
    "orig_in21k_ft_in1k": (1000, "google"),
}
