"""Pretrained weights of Google's R+ViT hybrids (JAX-trained: tanh GELU and Google's ResNet
numerics)."""

from __future__ import annotations

from .entry import PretrainedEntry
from .vit import AUGREG, ORIG, VIT_PAPER, google

_R_TI16 = "R_Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0"
_R26_S32 = "R26_S_32-i21k-300ep-lr_0.001-aug_medium2-wd_0.03-do_0.0-sd_0.0"
_R26_S32_FT224 = "R26_S_32-i21k-300ep-lr_0.001-aug_light0-wd_0.03-do_0.1-sd_0.1"
_FT = "--imagenet2012-steps_20k-lr_0.03-res_{}"

ENTRIES: tuple[PretrainedEntry, ...] = (
    google("vit_tiny_r_s16_p8_224", "augreg_in21k_ft_in1k", 1000, 224,
           AUGREG + _R_TI16 + _FT.format(224) + ".npz"),
    google("vit_tiny_r_s16_p8_224", "augreg_in21k", 21843, 224, AUGREG + _R_TI16 + ".npz"),
    google("vit_tiny_r_s16_p8_384", "augreg_in21k_ft_in1k", 1000, 384,
           AUGREG + _R_TI16 + _FT.format(384) + ".npz"),
    google("vit_small_r26_s32_224", "augreg_in21k_ft_in1k", 1000, 224,
           AUGREG + _R26_S32_FT224 + _FT.format(224) + ".npz"),
    google("vit_small_r26_s32_224", "augreg_in21k", 21843, 224, AUGREG + _R26_S32 + ".npz"),
    google("vit_small_r26_s32_384", "augreg_in21k_ft_in1k", 1000, 384,
           AUGREG + _R26_S32 + _FT.format(384) + ".npz"),
    google("vit_base_r50_s16_224", "orig_in21k", 0, 224,
           ORIG + "imagenet21k/R50+ViT-B_16.npz", paper=VIT_PAPER,
           notes="Google zeroed this release's 21k head; it is loaded without one."),
    google("vit_base_r50_s16_384", "orig_in21k_ft_in1k", 1000, 384,
           ORIG + "imagenet21k+imagenet2012/R50+ViT-B_16.npz", paper=VIT_PAPER, top1=84.99),
)
