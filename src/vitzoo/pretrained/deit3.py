"""Pretrained weights of DeiT III (facebookresearch/deit, ``README_revenge.md``), trained in
PyTorch.

The original files are ``{"model": state_dict}`` with LayerScale as ``gamma_1`` / ``gamma_2``.
``fb_in22k_ft_in1k`` are the "21k" files: pre-trained on ImageNet-21k and fine-tuned on 1k.
Preprocessing is timm's (ImageNet mean/std, bicubic, crop_pct 0.9 for the 224 ImageNet-1k
weights, 1.0 otherwise); DeiT's ``main.py`` evaluates with 0.875 by default, the README's
commands with 1.0.
"""

from __future__ import annotations

from .entry import IMAGENET_MEAN, IMAGENET_STD, PretrainedEntry

DEIT3_PAPER = "Touvron et al., DeiT III: Revenge of the ViT (ECCV 2022), arXiv:2204.07118"
_URL = "https://dl.fbaipublicfiles.com/deit/"
# (arch, original file stem, top-1 ImageNet-1k, top-1 21k -> 1k)
_TABLE = (
    ("deit3_small_patch16_224", "small_224", 81.4, 83.1),
    ("deit3_small_patch16_384", "small_384", 83.4, 84.8),
    ("deit3_medium_patch16_224", "medium_224", 83.0, 84.5),
    ("deit3_base_patch16_224", "base_224", 83.8, 85.7),
    ("deit3_base_patch16_384", "base_384", 85.0, 86.7),
    ("deit3_large_patch16_224", "large_224", 84.9, 87.0),
    ("deit3_large_patch16_384", "large_384", 85.8, 87.7),
    ("deit3_huge_patch14_224", "huge_224", 85.2, 87.2),
)


def _deit3(arch: str, stem: str, tag: str, top1: float) -> PretrainedEntry:
    img = int(arch.rsplit("_", 1)[1])
    in1k = tag == "fb_in1k"
    suffix = "1k" if in1k else ("21k_v1" if stem == "huge_224" else "21k")
    return PretrainedEntry(
        arch, tag, 1000, img, "pytorch", hf_hub_id=f"timm/{arch}.{tag}",
        url=f"{_URL}deit_3_{stem}_{suffix}.pth", url_format="pth", mean=IMAGENET_MEAN,
        std=IMAGENET_STD, crop_pct=0.9 if in1k and img == 224 else 1.0, paper=DEIT3_PAPER,
        top1=top1, top1_protocol="DeiT III README",
        notes="" if in1k else "Pre-trained on ImageNet-21k, fine-tuned on ImageNet-1k.")


ENTRIES: tuple[PretrainedEntry, ...] = tuple(
    entry for arch, stem, top1, top1_21k in _TABLE
    for entry in (_deit3(arch, stem, "fb_in1k", top1),
                  _deit3(arch, stem, "fb_in22k_ft_in1k", top1_21k)))
