"""Pretrained weights: one table per family (``vit.py``, ``deit.py``, ``hybrid.py``,
``dinov2.py``, ``deit3.py``, ``clip.py``, ``siglip.py``), and
:class:`PretrainedCfg`, the schema of ``model.pretrained_cfg``.

Each ``arch.tag`` is a :class:`PretrainedEntry`; an architecture's first entry is its default
tag (models.md).
"""

from __future__ import annotations

from . import clip, deit, deit3, dinov2, hybrid, siglip, vit
from .cfg import PretrainedCfg, build_pretrained_cfg, resolve_pretrained_cfg
from .entry import (
    GOOGLE_PREPROCESSING,
    HF_FILE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PretrainedEntry,
    numerics_of,
)

__all__ = ["GOOGLE_PREPROCESSING", "HF_FILE", "IMAGENET_MEAN", "IMAGENET_STD", "PretrainedCfg",
           "PretrainedEntry", "all_entries", "build_pretrained_cfg", "default_tag", "get_entry",
           "numerics_of", "resolve_pretrained_cfg", "tag_num_classes", "tags_for"]

_BY_ARCH: dict[str, list[PretrainedEntry]] = {}
for _entry in (*vit.ENTRIES, *deit.ENTRIES, *hybrid.ENTRIES, *dinov2.ENTRIES, *deit3.ENTRIES,
               *clip.ENTRIES, *siglip.ENTRIES):
    _BY_ARCH.setdefault(_entry.arch, []).append(_entry)


def all_entries() -> list[PretrainedEntry]:
    """Every entry, grouped by architecture, default tags first."""
    return [e for entries in _BY_ARCH.values() for e in entries]


def tags_for(arch: str) -> list[str]:
    """Known pretrained tags of ``arch``, default first (empty if none)."""
    return [e.tag for e in _BY_ARCH.get(arch, [])]


def default_tag(arch: str) -> str | None:
    """The default tag of ``arch``, or None when it has no pretrained weights."""
    tags = tags_for(arch)
    return tags[0] if tags else None


def get_entry(arch: str, tag: str | None) -> PretrainedEntry | None:
    """The entry of ``arch.tag`` (the default tag when ``tag`` is None), or None."""
    entries = _BY_ARCH.get(arch, [])
    if tag is None:
        return entries[0] if entries else None
    return next((e for e in entries if e.tag == tag), None)


def tag_num_classes(arch: str, tag: str | None) -> int | None:
    """Classes of the weights ``arch.tag`` (None when the architecture has no table)."""
    entry = get_entry(arch, tag)
    return entry.num_classes if entry is not None else None

