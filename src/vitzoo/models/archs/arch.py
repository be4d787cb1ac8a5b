"""One registered architecture, as data."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import ViTConfig
from ..vision_transformer import VisionTransformer

__all__ = ["SIZE_NAMES", "SHORT_NAMES", "Arch"]

# The paper's size names and the words timm's names use for them.
SIZE_NAMES = {"Ti": "tiny", "S": "small", "B": "base", "L": "large", "H": "huge"}
SHORT_NAMES = {"Ti": "ti", "S": "s", "B": "b", "L": "l", "H": "h"}


@dataclass(frozen=True)
class Arch:
    """An architecture: ``name -> cfg``, built as ``model_cls`` (None: the class ``cfg``
    implies, :func:`vitzoo.models.model_class`).

    ``aliases`` are other names of the architecture; ``tag_aliases`` are ``(alias, tag)``
    pairs naming one of its weight sets (``ViT-SO400M-14-SigLIP-384`` is
    ``vit_so400m_patch14_siglip_384.webli``)."""

    name: str
    cfg: ViTConfig
    summary: str
    aliases: tuple[str, ...] = ()
    model_cls: type[VisionTransformer] | None = None
    tag_aliases: tuple[tuple[str, str], ...] = ()
