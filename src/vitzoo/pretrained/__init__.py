"""Pretrained tags per architecture and the preprocessing that goes with them.

One table per family (``vit.py``, ``deit.py``). ``tags_for`` lists an architecture's tags,
default first; ``pretrained_cfg`` gives the ``model.pretrained_cfg`` dict of an ``arch.tag``.
"""

from __future__ import annotations

from typing import Any

from . import deit, hybrid, vit

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "default_tag", "pretrained_cfg", "tags_for"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GOOGLE_MEAN = (0.5, 0.5, 0.5)
GOOGLE_STD = (0.5, 0.5, 0.5)

_FAMILIES = (vit, deit, hybrid)


def tags_for(arch: str) -> list[str]:
    """Known pretrained tags of ``arch``, default first (empty if none)."""
    for family in _FAMILIES:
        if arch in family.TAGS:
            return list(family.TAGS[arch])
    return []


def default_tag(arch: str) -> str | None:
    """The default tag of ``arch``, or None when it has no pretrained weights."""
    tags = tags_for(arch)
    return tags[0] if tags else None


def _tag_info(arch: str, tag: str) -> tuple[int | None, str | None]:
    for family in _FAMILIES:
        if arch in family.TAGS:
            return family.TAG_INFO.get(tag, (None, None))
    return None, None


def tag_num_classes(arch: str, tag: str | None) -> int | None:
    """Classes of the weights ``arch.tag`` (None when unknown)."""
    if tag is None:
        return None
    return _tag_info(arch, tag)[0]


def pretrained_cfg(arch: str, tag: str | None, *, img_size: tuple[int, int],
                   in_chans: int, num_classes: int) -> dict[str, Any]:
    """The preprocessing and provenance dict attached to a model as ``pretrained_cfg``.

    Google-trained weights normalise pixels to [-1, 1] (mean = std = 0.5); DeiT, DINO and MAE
    weights, and architectures without recorded weights, use the ImageNet statistics.
    Evaluation resizes by ``1 / crop_pct`` and centre-crops (bicubic); crop_pct is 0.9 for
    Google weights at 224, 0.875 for the others, 1.0 at 384.
    """
    family = _tag_info(arch, tag)[1] if tag is not None else None
    google = family == "google"
    mean, std = (GOOGLE_MEAN, GOOGLE_STD) if google else (IMAGENET_MEAN, IMAGENET_STD)
    if min(img_size) >= 384:
        crop_pct = 1.0
    else:
        crop_pct = 0.9 if google else 0.875
    return {
        "architecture": arch,
        "tag": tag,
        "input_size": (in_chans, *img_size),
        "num_classes": num_classes,
        "mean": mean,
        "std": std,
        "interpolation": "bicubic",
        "crop_pct": crop_pct,
    }
