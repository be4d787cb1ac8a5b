"""Pretrained weights of DeiT (facebookresearch/deit), trained in PyTorch.

The original files are ``.pth`` with ``{"model": state_dict}``; their names end with the first
8 hex digits of their sha256. Preprocessing: ImageNet mean/std, bicubic resize, centre crop,
with timm's crop_pct for these weights (0.9; 1.0 at 384), so timm code and vitzoo preprocess
them alike (DeiT's own evaluation used 0.875; models.md).
"""

from __future__ import annotations

from .entry import IMAGENET_MEAN, IMAGENET_STD, PretrainedEntry

DEIT_PAPER = ("Touvron et al., Training data-efficient image transformers & distillation "
              "through attention (ICML 2021), arXiv:2012.12877")
_URL = "https://dl.fbaipublicfiles.com/deit/"


def _deit(arch: str, img: int, digest: str, top1: float | None = None) -> PretrainedEntry:
    return PretrainedEntry(
        arch, "fb_in1k", 1000, img, "pytorch", hf_hub_id=f"timm/{arch}.fb_in1k",
        url=f"{_URL}{arch}-{digest}.pth", url_format="pth", sha256=digest,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=1.0 if img >= 384 else 0.9,
        paper=DEIT_PAPER, top1=top1)


ENTRIES: tuple[PretrainedEntry, ...] = (
    _deit("deit_tiny_patch16_224", 224, "a1311bcf", 72.19),
    _deit("deit_small_patch16_224", 224, "cd65a155", 79.86),
    _deit("deit_base_patch16_224", 224, "b5f2ef4d", 81.98),
    _deit("deit_base_patch16_384", 384, "8de9b5d1"),
    _deit("deit_tiny_distilled_patch16_224", 224, "b40b3cf7", 74.54),
    _deit("deit_small_distilled_patch16_224", 224, "649709d9", 81.20),
    _deit("deit_base_distilled_patch16_224", 224, "df68dfff", 83.38),
    _deit("deit_base_distilled_patch16_384", 384, "d0272ac0", 85.44),
)
