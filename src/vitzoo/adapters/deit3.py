"""DeiT III checkpoints (facebookresearch/deit ``models_v2.py``; Touvron et al., "DeiT III:
Revenge of the ViT", ECCV 2022): ``vit_models`` with ``Layer_scale_init_Block``.

The released ``deit_3_*.pth`` files are ``{"model": state_dict}`` (unwrapped when the file is
read). Their keys are timm's except the LayerScale factors, ``blocks.{i}.gamma_1`` / ``gamma_2``
(timm: ``ls1.gamma`` / ``ls2.gamma``), and the position table has one row per patch and none for
the class token: it is added to the patches before the class token is prepended (vitzoo's
``no_embed_class``). PyTorch-trained: exact GELU, LayerNorm eps 1e-6, qkv bias.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from ..layers.helpers import is_square
from ..pretrained import IMAGENET_MEAN, IMAGENET_STD, numerics_of
from .rename import RenameTable, Rule

__all__ = ["LAYER_SCALE_RULES", "ORIGIN", "RENAMES", "config_fields", "detect", "num_heads_for",
           "preprocessing", "to_vitzoo"]

ORIGIN = "pytorch"

# The one place the DeiT III LayerScale names are spelled (timm.py reuses these rules).
LAYER_SCALE_RULES: tuple[Rule, ...] = (
    Rule("blocks.{i}.gamma_1", "blocks.{i}.ls1.gamma"),
    Rule("blocks.{i}.gamma_2", "blocks.{i}.ls2.gamma"),
)

_BLOCK_PARAMS = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
RENAMES = RenameTable([
    Rule("cls_token", "cls_token"),
    Rule("pos_embed", "pos_embed"),
    Rule("patch_embed.proj.weight", "patch_embed.proj.weight"),
    Rule("patch_embed.proj.bias", "patch_embed.proj.bias"),
    *LAYER_SCALE_RULES,
    *(Rule(f"blocks.{{i}}.{p}.{w}", f"blocks.{{i}}.{p}.{w}")
      for p in _BLOCK_PARAMS for w in ("weight", "bias")),
    Rule("norm.weight", "norm.weight"),
    Rule("norm.bias", "norm.bias"),
    Rule("head.weight", "head.weight"),
    Rule("head.bias", "head.bias"),
])

# DeiT III keeps the head dim at 64, except ViT-H/14 (1280 wide, 16 heads of 80).
_HEADS = {1280: 16}



def detect(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` is a DeiT III state dict: ``gamma_1`` LayerScale names, a class token,
    and a position table with no row for it (a square number of rows; a classic one has 1 + N)."""
    pos = state.get("pos_embed")
    return ("blocks.0.gamma_1" in state and "cls_token" in state and pos is not None
            and pos.ndim == 3 and is_square(int(pos.shape[1])))


def to_vitzoo(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """DeiT III keys -> vitzoo's: ``(tensors, keys with no vitzoo place)``."""
    return RENAMES.to_vitzoo(state)


def num_heads_for(width: int) -> int:
    """The heads of a DeiT III model of this width (not stored: ``qkv`` is fused)."""
    return _HEADS.get(width, max(1, width // 64))


def config_fields(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """ViTConfig fields of a (converted) DeiT III state dict, read off its shapes.

    Raises:
        ValueError: a tensor the architecture is read from is missing or not square.
    """
    for key, ndim in (("patch_embed.proj.weight", 4), ("pos_embed", 3),
                      ("blocks.0.mlp.fc1.weight", 2)):
        if key not in state:
            raise ValueError(f"no {key!r}: not a complete DeiT III state dict")
        if state[key].ndim != ndim:
            raise ValueError(f"{key} has shape {tuple(state[key].shape)}, not {ndim}-D as in "
                             "DeiT III")
    width, in_chans, ph, pw = state["patch_embed.proj.weight"].shape
    rows = int(state["pos_embed"].shape[1])
    side = math.isqrt(rows)
    if side * side != rows:
        raise ValueError(f"the position table has {rows} rows, not a square grid")
    depth = len({m.group(1) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    head = state.get("head.weight")
    if head is not None and head.ndim != 2:
        raise ValueError(f"head.weight has shape {tuple(head.shape)}, not 2-D")
    return {
        "img_size": (side * int(ph), side * int(pw)), "patch_size": (int(ph), int(pw)),
        "in_chans": int(in_chans), "embed_dim": int(width), "depth": depth,
        "num_heads": num_heads_for(int(width)),
        "mlp_dim": int(state["blocks.0.mlp.fc1.weight"].shape[0]),
        "qkv_bias": "blocks.0.attn.qkv.bias" in state, "class_token": True,
        "no_embed_class": True, "global_pool": "token", "fc_norm": False,
        "init_values": 1e-6 if "blocks.0.ls1.gamma" in state else None,  # timm's deit3_* value
        "num_classes": int(head.shape[0]) if head is not None else 0,
        "norm_eps": 1e-6, **numerics_of(ORIGIN),
    }


def preprocessing(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """timm's ``deit3_*`` eval preprocessing: ImageNet mean/std, bicubic, crop_pct 1.0 at 384 px
    and 0.9 below (timm's in22k-fine-tuned 224 px tags use 1.0; the file cannot tell)."""
    size = config_fields(state)["img_size"]
    return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "interpolation": "bicubic",
            "crop_pct": 1.0 if max(size) >= 384 else 0.9, "input_size": (3, *size)}
