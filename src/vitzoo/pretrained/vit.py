"""Pretrained weights of the plain ViT architectures (models.md; timm 1.0.31's tags).

Every set timm hosts is on the Hugging Face Hub as ``timm/<arch>.<tag>``; the Google ones also
at their original ``.npz`` address, the Facebook ones at their ``.pth`` address. Google's
weights run with JAX's numerics (tanh GELU) whichever source they come from.
"""

from __future__ import annotations

from typing import Any

from .entry import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, PretrainedEntry

AUGREG = "https://storage.googleapis.com/vit_models/augreg/"
ORIG = "https://storage.googleapis.com/vit_models/"
AUGREG_PAPER = "Steiner et al., How to train your ViT? (TMLR 2022), arXiv:2106.10270"
VIT_PAPER = "Dosovitskiy et al., An Image is Worth 16x16 Words (ICLR 2021), arXiv:2010.11929"
SAM_PAPER = ("Chen et al., When Vision Transformers Outperform ResNets (ICLR 2022), "
             "arXiv:2106.01548")
DINO_PAPER = ("Caron et al., Emerging Properties in Self-Supervised ViTs (ICCV 2021), "
              "arXiv:2104.14294")
MAE_PAPER = ("He et al., Masked Autoencoders Are Scalable Vision Learners (CVPR 2022), "
             "arXiv:2111.06377")


def _crop(img: int) -> float:
    return 1.0 if img >= 384 else 0.9


def google(arch: str, tag: str, num_classes: int, img: int, url: str | None,
           paper: str = AUGREG_PAPER, top1: float | None = None,
           notes: str = "") -> PretrainedEntry:
    """Weights trained in Google's JAX code (mean = std = 0.5; tanh GELU)."""
    return PretrainedEntry(arch, tag, num_classes, img, "jax", hf_hub_id=f"timm/{arch}.{tag}",
                           url=url, url_format="jax_npz" if url else None, crop_pct=_crop(img),
                           paper=paper, top1=top1, notes=notes)


def pytorch(arch: str, tag: str, num_classes: int, img: int, url: str | None = None, *,
            mean: tuple[float, float, float] = IMAGENET_MEAN,
            std: tuple[float, float, float] = IMAGENET_STD, crop_pct: float = 0.9, paper: str,
            license: str = "apache-2.0", top1: float | None = None,
            notes: str = "", extra: dict[str, Any] | None = None) -> PretrainedEntry:
    """Weights trained in PyTorch (exact GELU)."""
    return PretrainedEntry(arch, tag, num_classes, img, "pytorch", hf_hub_id=f"timm/{arch}.{tag}",
                           url=url, url_format="pth" if url else None, mean=mean, std=std,
                           crop_pct=crop_pct, paper=paper, license=license, top1=top1,
                           notes=notes, extra=extra or {})


def _augreg(name: str, ft: str | None) -> str:
    """The AugReg file name: the i21k upstream, then ``--`` and the fine-tune, if any."""
    return AUGREG + name + (f"--imagenet2012-steps_20k-{ft}" if ft else "") + ".npz"


_TI16 = "Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0"
_S32 = "S_32-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0"
_S16 = "S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0"
_S16_I1K = "S_16-i1k-300ep-lr_0.001-aug_medium2-wd_0.1-do_0.0-sd_0.0"
_B32 = "B_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.03-do_0.0-sd_0.0"
_B32_384 = "B_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0"
_B32_I1K = "B_32-i1k-300ep-lr_0.001-aug_medium2-wd_0.1-do_0.1-sd_0.1"
_B16 = "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0"
_B16_I1K = "B_16-i1k-300ep-lr_0.001-aug_strong2-wd_0.1-do_0.1-sd_0.1"
_B8 = "B_8-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0"
_L16 = "L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1"

_ZEROED = "Google zeroed this release's 21k head; it is loaded without one."
_AUGREG2 = "AugReg i21k weights fine-tuned on ImageNet-1k in PyTorch by timm (augreg2)."

ENTRIES: tuple[PretrainedEntry, ...] = (
    google("vit_tiny_patch16_224", "augreg_in21k_ft_in1k", 1000, 224,
           _augreg(_TI16, "lr_0.03-res_224"), top1=75.45),
    google("vit_tiny_patch16_224", "augreg_in21k", 21843, 224, _augreg(_TI16, None)),
    google("vit_tiny_patch16_384", "augreg_in21k_ft_in1k", 1000, 384,
           _augreg(_TI16, "lr_0.03-res_384")),
    google("vit_small_patch32_224", "augreg_in21k_ft_in1k", 1000, 224,
           _augreg(_S32, "lr_0.03-res_224")),
    google("vit_small_patch32_224", "augreg_in21k", 21843, 224, _augreg(_S32, None)),
    google("vit_small_patch32_384", "augreg_in21k_ft_in1k", 1000, 384,
           _augreg(_S32, "lr_0.03-res_384")),
    google("vit_small_patch16_224", "augreg_in21k_ft_in1k", 1000, 224,
           _augreg(_S16, "lr_0.03-res_224"), top1=81.40),
    google("vit_small_patch16_224", "augreg_in1k", 1000, 224,
           _augreg(_S16_I1K, "lr_0.01-res_224")),
    google("vit_small_patch16_224", "augreg_in21k", 21843, 224, _augreg(_S16, None)),
    pytorch("vit_small_patch16_224", "dino", 0, 224,
            "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/"
            "dino_deitsmall16_pretrain.pth", paper=DINO_PAPER),
    google("vit_small_patch16_384", "augreg_in21k_ft_in1k", 1000, 384,
           _augreg(_S16, "lr_0.03-res_384")),
    google("vit_small_patch16_384", "augreg_in1k", 1000, 384,
           _augreg(_S16_I1K, "lr_0.01-res_384")),
    pytorch("vit_small_patch8_224", "dino", 0, 224,
            "https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/"
            "dino_deitsmall8_pretrain.pth", paper=DINO_PAPER),
    google("vit_base_patch32_224", "augreg_in21k_ft_in1k", 1000, 224,
           _augreg(_B32, "lr_0.03-res_224")),
    google("vit_base_patch32_224", "augreg_in1k", 1000, 224,
           _augreg(_B32_I1K, "lr_0.01-res_224")),
    google("vit_base_patch32_224", "augreg_in21k", 21843, 224, _augreg(_B32, None)),
    google("vit_base_patch32_224", "orig_in21k", 0, 224, ORIG + "imagenet21k/ViT-B_32.npz",
           paper=VIT_PAPER, notes=_ZEROED),
    google("vit_base_patch32_224", "sam_in1k", 1000, 224, ORIG + "sam/ViT-B_32.npz",
           paper=SAM_PAPER),
    google("vit_base_patch32_384", "augreg_in21k_ft_in1k", 1000, 384,
           _augreg(_B32_384, "lr_0.03-res_384")),
    google("vit_base_patch32_384", "augreg_in1k", 1000, 384,
           _augreg(_B32_I1K, "lr_0.01-res_384")),
    pytorch("vit_base_patch16_224", "augreg2_in21k_ft_in1k", 1000, 224,
            mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), paper=AUGREG_PAPER, top1=85.11,
            notes=_AUGREG2),
    google("vit_base_patch16_224", "augreg_in1k", 1000, 224,
           _augreg(_B16_I1K, "lr_0.01-res_224")),
    google("vit_base_patch16_224", "augreg_in21k", 21843, 224, _augreg(_B16, None)),
    google("vit_base_patch16_224", "augreg_in21k_ft_in1k", 1000, 224,
           _augreg(_B16, "lr_0.01-res_224"), top1=84.53),
    pytorch("vit_base_patch16_224", "bamboo", 115217, 224, mean=CLIP_MEAN, std=CLIP_STD,
            crop_pct=1.0, license="unknown",
            paper="Zhang et al., Bamboo: Building Mega-Scale Vision Dataset Continually with "
                  "Human-Machine Synergy, arXiv:2203.07845",
            notes="115,217 Bamboo concepts; CLIP preprocessing.",
            extra={"origin_url": "https://github.com/ZhangYuanhan-AI/Bamboo",
                   "paper_ids": "arXiv:2203.07845"}),
    pytorch("vit_base_patch16_224", "dino", 0, 224,
            "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/"
            "dino_vitbase16_pretrain.pth", paper=DINO_PAPER),
    pytorch("vit_base_patch16_224", "mae", 0, 224,
            "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth",
            paper=MAE_PAPER, license="cc-by-nc-4.0"),
    google("vit_base_patch16_224", "orig_in21k", 0, 224, ORIG + "imagenet21k/ViT-B_16.npz",
           paper=VIT_PAPER, notes=_ZEROED),
    google("vit_base_patch16_224", "orig_in21k_ft_in1k", 1000, 224,
           ORIG + "imagenet21k+imagenet2012/ViT-B_16-224.npz", paper=VIT_PAPER, top1=81.78),
    google("vit_base_patch16_224", "sam_in1k", 1000, 224, ORIG + "sam/ViT-B_16.npz",
           paper=SAM_PAPER),
    google("vit_base_patch16_384", "augreg_in21k_ft_in1k", 1000, 384,
           _augreg(_B16, "lr_0.01-res_384"), top1=86.01),
    google("vit_base_patch16_384", "augreg_in1k", 1000, 384,
           _augreg(_B16_I1K, "lr_0.01-res_384")),
    google("vit_base_patch16_384", "orig_in21k_ft_in1k", 1000, 384,
           ORIG + "imagenet21k+imagenet2012/ViT-B_16.npz", paper=VIT_PAPER),
    pytorch("vit_base_patch8_224", "augreg2_in21k_ft_in1k", 1000, 224,
            mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), paper=AUGREG_PAPER, notes=_AUGREG2),
    google("vit_base_patch8_224", "augreg_in21k", 21843, 224, _augreg(_B8, None)),
    google("vit_base_patch8_224", "augreg_in21k_ft_in1k", 1000, 224,
           _augreg(_B8, "lr_0.01-res_224")),
    pytorch("vit_base_patch8_224", "dino", 0, 224,
            "https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/"
            "dino_vitbase8_pretrain.pth", paper=DINO_PAPER),
    google("vit_large_patch32_224", "orig_in21k", 0, 224, ORIG + "imagenet21k/ViT-L_32.npz",
           paper=VIT_PAPER, notes=_ZEROED),
    google("vit_large_patch32_384", "orig_in21k_ft_in1k", 1000, 384,
           ORIG + "imagenet21k+imagenet2012/ViT-L_32.npz", paper=VIT_PAPER),
    google("vit_large_patch16_224", "augreg_in21k_ft_in1k", 1000, 224,
           _augreg(_L16, "lr_0.01-res_224"), top1=85.86),
    google("vit_large_patch16_224", "augreg_in21k", 21843, 224, _augreg(_L16, None)),
    pytorch("vit_large_patch16_224", "mae", 0, 224,
            "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_large.pth",
            paper=MAE_PAPER, license="cc-by-nc-4.0"),
    google("vit_large_patch16_224", "orig_in21k", 0, 224, ORIG + "imagenet21k/ViT-L_16.npz",
           paper=VIT_PAPER, notes=_ZEROED),
    google("vit_large_patch16_384", "augreg_in21k_ft_in1k", 1000, 384,
           _augreg(_L16, "lr_0.01-res_384"), top1=87.10),
    PretrainedEntry("vit_large_patch14_224", "untrained", 1000, 224, "pytorch",
                    notes="No weights: the architecture's default configuration only."),
    google("vit_huge_patch14_224", "orig_in21k", 0, 224, ORIG + "imagenet21k/ViT-H_14.npz",
           paper=VIT_PAPER, notes=_ZEROED),
    pytorch("vit_huge_patch14_224", "mae", 0, 224,
            "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_huge.pth",
            paper=MAE_PAPER, license="cc-by-nc-4.0"),
)
