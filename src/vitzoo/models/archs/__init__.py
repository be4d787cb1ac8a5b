"""The registered architectures: one table per family, data only.

Each :class:`Arch` is a name, the config it stands for, a one-line summary, its aliases and,
where it is not the class the config implies, the model class. The registry
(:mod:`vitzoo.registry`) registers them; a new family is a new table here (plus its weight
table in :mod:`vitzoo.pretrained` and, for its original files, an adapter).
"""

from __future__ import annotations

from .arch import Arch
from .clip import ARCHS as CLIP_ARCHS
from .deit import ARCHS as DEIT_ARCHS
from .deit3 import ARCHS as DEIT3_ARCHS
from .dinov2 import ARCHS as DINOV2_ARCHS
from .hybrid import ARCHS as HYBRID_ARCHS
from .siglip import ARCHS as SIGLIP_ARCHS
from .vit import ARCHS as VIT_ARCHS

__all__ = ["ARCHS", "FAMILIES", "MODULES", "Arch"]

FAMILIES: dict[str, tuple[Arch, ...]] = {
    "vit": VIT_ARCHS, "deit": DEIT_ARCHS, "hybrid": HYBRID_ARCHS, "dinov2": DINOV2_ARCHS,
    "deit3": DEIT3_ARCHS, "clip": CLIP_ARCHS, "siglip": SIGLIP_ARCHS,
}
"""The tables by family (``vitzoo list --family``, docs/models.md)."""
ARCHS: tuple[Arch, ...] = tuple(a for table in FAMILIES.values() for a in table)
_TIMM_MODULES = {"deit": "deit", "deit3": "deit", "hybrid": "vision_transformer_hybrid"}
MODULES: dict[str, str] = {
    a.name: _TIMM_MODULES.get(family, "vision_transformer")
    for family, table in FAMILIES.items() for a in table
}
"""Architecture -> the name of timm's module defining it (``list_models(module=...)``)."""
