"""Pretrained tags of the plain ViT architectures (models.md; timm 1.0.31's names).

The first tag of each architecture is its default. Sources (hub ids, Google URLs, checksums)
are added with the weight downloads.
"""

from __future__ import annotations

TAGS: dict[str, tuple[str, ...]] = {
    "vit_tiny_patch16_224": ("augreg_in21k_ft_in1k", "augreg_in21k"),
    "vit_tiny_patch16_384": ("augreg_in21k_ft_in1k",),
    "vit_small_patch32_224": ("augreg_in21k_ft_in1k", "augreg_in21k"),
    "vit_small_patch32_384": ("augreg_in21k_ft_in1k",),
    "vit_small_patch16_224": ("augreg_in21k_ft_in1k", "augreg_in1k", "augreg_in21k", "dino"),
    "vit_small_patch16_384": ("augreg_in21k_ft_in1k", "augreg_in1k"),
    "vit_small_patch8_224": ("dino",),
    "vit_base_patch32_224": ("augreg_in21k_ft_in1k", "augreg_in1k", "augreg_in21k",
                             "orig_in21k", "sam_in1k"),
    "vit_base_patch32_384": ("augreg_in21k_ft_in1k", "augreg_in1k"),
    "vit_base_patch16_224": ("augreg2_in21k_ft_in1k", "augreg_in1k", "augreg_in21k",
                             "augreg_in21k_ft_in1k", "bamboo", "dino", "mae", "orig_in21k",
                             "orig_in21k_ft_in1k", "sam_in1k"),
    "vit_base_patch16_384": ("augreg_in21k_ft_in1k", "augreg_in1k", "orig_in21k_ft_in1k"),
    "vit_base_patch8_224": ("augreg2_in21k_ft_in1k", "augreg_in21k", "augreg_in21k_ft_in1k",
                            "dino"),
    "vit_large_patch32_224": ("orig_in21k",),
    "vit_large_patch32_384": ("orig_in21k_ft_in1k",),
    "vit_large_patch16_224": ("augreg_in21k_ft_in1k", "augreg_in21k", "mae", "orig_in21k"),
    "vit_large_patch16_384": ("augreg_in21k_ft_in1k",),
    "vit_large_patch14_224": ("untrained",),
    "vit_huge_patch14_224": ("orig_in21k", "mae"),
}

# tag -> (num_classes, preprocessing family); None where not yet recorded.
TAG_INFO: dict[str, tuple[int | None, str | None]] = {
    "augreg_in21k_ft_in1k": (1000, "google"),
    "augreg2_in21k_ft_in1k": (1000, "google"),
    "augreg_in1k": (1000, "google"),
    "augreg_in21k": (21843, "google"),
    "orig_in21k": (0, "google"),  # Google zeroed these 21k heads; they are shipped headless
    "orig_in21k_ft_in1k": (1000, "google"),
    "sam_in1k": (1000, "google"),
    "dino": (0, "imagenet"),
    "mae": (0, "imagenet"),
    "untrained": (1000, "google"),
    "bamboo": (None, None),
}
