"""The registered architectures: one table per family, data only.

Each :class:`Arch` is a name, the config it stands for, a one-line summary, its aliases and,
where it is not the class the config implies, the model class. The registry
(:mod:`vitzoo.registry`) registers them; a new family is a new table here (plus its weight
table in :mod:`vitzoo.pretrained` and, for its original files, an adapter).
"""

from __future__ import annotations

from .arch import Arch
from .deit import ARCHS as DEIT_ARCHS
from .hybrid import ARCHS as HYBRID_ARCHS
from .vit import ARCHS as VIT_ARCHS

__all__ = ["ARCHS", "MODULES", "Arch"]

ARCHS: tuple[Arch, ...] = (*VIT_ARCHS, *DEIT_ARCHS, *HYBRID_ARCHS)
MODULES: dict[str, str] = {
    **{a.name: "vision_transformer" for a in VIT_ARCHS},
    **{a.name: "deit" for a in DEIT_ARCHS},
    **{a.name: "vision_transformer_hybrid" for a in HYBRID_ARCHS},
}
"""Architecture -> the name of timm's module defining it (``list_models(module=...)``)."""
