"""Pretrained weights of DINOv2 (facebookresearch/dinov2), trained in PyTorch.

The original files are bare state dicts (``dinov2_vits14_pretrain.pth`` ...; read by the
``dinov2`` adapter), the Hub copies timm's layout. Preprocessing is timm's for these weights:
ImageNet mean/std, 518x518, bicubic, no crop (DINOv2's own linear evaluation resizes to 256
and centre-crops 224). The reported accuracy is DINOv2's linear probe on frozen features.
"""

from __future__ import annotations

from .entry import IMAGENET_MEAN, IMAGENET_STD, PretrainedEntry

DINOV2_PAPER = ("Oquab et al., DINOv2: Learning Robust Visual Features without Supervision "
                "(TMLR 2024), arXiv:2304.07193")
REGISTERS_PAPER = ("Darcet et al., Vision Transformers Need Registers (ICLR 2024), "
                   "arXiv:2309.16588")
_URL = "https://dl.fbaipublicfiles.com/dinov2/"
# size word, original letter, linear-probe top-1 (plain, with registers)
_SIZES = (("small", "s", 81.1, 80.9), ("base", "b", 84.5, 84.6), ("large", "l", 86.3, 86.7),
          ("giant", "g", 86.5, 87.1))


def _dinov2(word: str, letter: str, registers: bool, top1: float) -> PretrainedEntry:
    reg = "_reg4" if registers else ""
    arch = f"vit_{word}_patch14{reg}_dinov2"
    stem = f"dinov2_vit{letter}14"
    return PretrainedEntry(
        arch, "lvd142m", 0, 518, "pytorch", hf_hub_id=f"timm/{arch}.lvd142m",
        url=f"{_URL}{stem}/{stem}{reg}_pretrain.pth", url_format="pth", mean=IMAGENET_MEAN,
        std=IMAGENET_STD, crop_pct=1.0, paper=DINOV2_PAPER if not registers
        else f"{DINOV2_PAPER}; {REGISTERS_PAPER}", top1=top1, top1_protocol="linear probe",
        notes="Self-supervised features (no classifier); any input size that is a multiple "
              "of 14 works.")


ENTRIES: tuple[PretrainedEntry, ...] = tuple(
    _dinov2(word, letter, registers, reg_top1 if registers else top1)
    for registers in (False, True) for word, letter, top1, reg_top1 in _SIZES)
