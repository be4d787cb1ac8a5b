"""timm and DeiT (facebookresearch/deit) checkpoints: vitzoo's own key layout.

Only the DeiT III LayerScale names differ (``blocks.{i}.gamma_1`` / ``gamma_2``); training
wrappers and ``module.`` / ``_orig_mod.`` prefixes are removed when the file is read.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .deit3 import LAYER_SCALE_RULES
from .rename import RenameTable

RENAMES = RenameTable(LAYER_SCALE_RULES)  # DeiT III's gamma_1 / gamma_2


def detect(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` is in timm's (= vitzoo's) layout."""
    return any(k.startswith(("patch_embed.proj.", "patch_embed.backbone.")) for k in state)


def to_vitzoo(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed, unmatched = RENAMES.to_vitzoo(state)
    renamed.update({k: state[k] for k in unmatched})  # everything else is already vitzoo's
    return renamed
