"""DINOv2 backbone files (facebookresearch/dinov2), with and without registers.

Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision" (TMLR 2024);
Darcet et al., "Vision Transformers Need Registers" (ICLR 2024). The released
``dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth`` are bare state dicts of
``DinoVisionTransformer`` whose names are mostly timm's already. The differences:

- ``mask_token (1, D)``, the masked-patch token of training, has no use at inference: dropped
  (its presence is what marks the layout);
- ``register_tokens (1, R, D)`` is ``reg_token``;
- the register models add row 0 of ``pos_embed`` to the class token and no row to the
  registers. vitzoo stores them as timm does: ``cls_token + pos_embed[:, 0]`` and the patch
  rows only (``no_embed_class``), the same values, so timm's hub files and the original
  files give the same vitzoo state. The plain models keep their ``1 + N`` rows;
- ViT-g's SwiGLU FFN ``mlp.w12`` (rows ``[gate; value]``, ``w3(silu(gate) * value)``) and
  ``mlp.w3`` are vitzoo's packed SwiGLU ``mlp.fc1`` / ``mlp.fc2``;
- training dumps with ``block_chunks > 0`` name the blocks ``blocks.{chunk}.{i}``; the
  releases have none, but they read the same.

The numerics are PyTorch's: LayerNorm eps 1e-6, exact GELU, and DINOv2's run-time
position-embedding interpolation (``pos_embed_resample="dinov2"`` or ``"dinov2_reg"``, see
:func:`vitzoo.layers.interpolate_pos_embed`), so a loaded model takes any input size the
original does and computes what it computes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from ..pretrained import IMAGENET_MEAN, IMAGENET_STD
from ..pretrained.dinov2 import DINOV2_PAPER, REGISTERS_PAPER
from .rename import RenameTable, Rule

ORIGIN = "pytorch"
HEAD_DIM = 64  # every release: S 384/6, B 768/12, L 1024/16, g 1536/24

_B = "blocks.{i}."
_SAME = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
         "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight",
         "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma"]

RENAMES = RenameTable([
    Rule("cls_token", "cls_token"),
    Rule("pos_embed", "pos_embed"),
    Rule("register_tokens", "reg_token"),
    Rule("patch_embed.proj.weight", "patch_embed.proj.weight"),
    Rule("patch_embed.proj.bias", "patch_embed.proj.bias"),
    *[Rule(_B + name, _B + name) for name in _SAME],
    Rule(_B + "mlp.w12.weight", _B + "mlp.fc1.weight"),  # SwiGLU (ViT-g)
    Rule(_B + "mlp.w12.bias", _B + "mlp.fc1.bias"),
    Rule(_B + "mlp.w3.weight", _B + "mlp.fc2.weight"),
    Rule(_B + "mlp.w3.bias", _B + "mlp.fc2.bias"),
    Rule("norm.weight", "norm.weight"),
    Rule("norm.bias", "norm.bias"),
])

DROPPED = ("mask_token",)
_CHUNKED = re.compile(r"^blocks\.\d+\.(\d+)\.")
_BLOCK = re.compile(r"^blocks\.(\d+)\.norm1\.weight$")


def detect(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` is an original DINOv2 file (it has the training ``mask_token``)."""
    return "mask_token" in state


def fold_class_position(cls_token: torch.Tensor, pos_embed: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cls_token + pos_embed[:, 0], pos_embed[:, 1:])``: a register model's class-token row
    moved into the class token (new tensors; the inputs are unchanged).

    Raises:
        ValueError: the shapes are not ``(1, 1, D)`` and ``(1, 1 + N, D)``.
    """
    if cls_token.ndim != 3 or cls_token.shape[:2] != (1, 1):
        raise ValueError(f"cls_token has shape {tuple(cls_token.shape)}, not (1, 1, D)")
    if (pos_embed.ndim != 3 or pos_embed.shape[0] != 1 or pos_embed.shape[1] < 2
            or pos_embed.shape[2] != cls_token.shape[2]):
        raise ValueError(f"pos_embed has shape {tuple(pos_embed.shape)}, not (1, 1 + N, "
                         f"{cls_token.shape[2]}) with a class row and N >= 1 patch rows")
    return cls_token + pos_embed[:, :1], pos_embed[:, 1:].clone()  # (1, 1, D), (1, N, D)


def _check_registers(reg: torch.Tensor, width: int) -> None:
    if reg.ndim != 3 or reg.shape[0] != 1 or reg.shape[1] < 1 or reg.shape[2] != width:
        raise ValueError(f"register_tokens has shape {tuple(reg.shape)}, not (1, R, {width}) "
                         "with R >= 1 registers; the file is not a DINOv2 register model")


def to_vitzoo(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``state`` in vitzoo's names, and the keys that have no vitzoo place.

    ``mask_token`` is dropped; a register model's position table is folded (module
    docstring). ``state`` itself is left as it is.

    Raises:
        ValueError: ``register_tokens``, ``cls_token`` or ``pos_embed`` has a shape no
            DINOv2 model has.
    """
    source = {_CHUNKED.sub(r"blocks.\1.", key): value for key, value in state.items()
              if key not in DROPPED}
    renamed, unplaced = RENAMES.to_vitzoo(source)
    if "reg_token" in renamed:
        if "cls_token" not in renamed or "pos_embed" not in renamed:
            raise ValueError("a DINOv2 register model needs cls_token and pos_embed; this file "
                             "has register_tokens without them")
        renamed["cls_token"], renamed["pos_embed"] = fold_class_position(
            renamed["cls_token"], renamed["pos_embed"])  # checks both shapes
        _check_registers(renamed["reg_token"], int(renamed["cls_token"].shape[-1]))
    return renamed, unplaced


def _tensor(state: Mapping[str, torch.Tensor], key: str, ndim: int) -> torch.Tensor:
    if key not in state:
        raise ValueError(f"a DINOv2 file has {key!r}; this one does not")
    value = state[key]
    if value.ndim != ndim:
        raise ValueError(f"{key} has shape {tuple(value.shape)}, not {ndim}-D as in DINOv2")
    return value


def _depth(state: Mapping[str, torch.Tensor]) -> int:
    found = sorted(int(m.group(1)) for key in state if (m := _BLOCK.match(key)))
    if not found or found != list(range(len(found))):
        raise ValueError(f"the blocks are not numbered 0 .. L-1 (found {found[:8]})")
    return len(found)


def _grid_side(state: Mapping[str, torch.Tensor], prefix_rows: int) -> int:
    pos = _tensor(state, "pos_embed", 3)
    rows = int(pos.shape[1]) - prefix_rows
    side = math.isqrt(max(rows, 0))
    if rows < 1 or side * side != rows:
        raise ValueError(f"pos_embed has {rows} patch rows, not a square grid (DINOv2's table "
                         "is M x M, 37 x 37 = 1369 rows in the releases)")
    return side


def _mlp_fields(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    fc1 = _tensor(state, "blocks.0.mlp.fc1.weight", 2)
    hidden = int(_tensor(state, "blocks.0.mlp.fc2.weight", 2).shape[1])
    if fc1.shape[0] == 2 * hidden:  # SwiGLU: [gate; value] rows, fc2 takes their product
        return {"mlp_layer": "swiglu", "mlp_dim": hidden}
    if fc1.shape[0] != hidden:
        raise ValueError(f"mlp.fc1 has {fc1.shape[0]} outputs and mlp.fc2 {hidden} inputs: "
                         "neither a GELU MLP nor a packed SwiGLU")
    return {"mlp_layer": "mlp", "mlp_dim": hidden}


def config_fields(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The ViTConfig of a converted DINOv2 state (:func:`to_vitzoo`'s output), read off the
    tensors: width, depth, heads (``width // 64``), patch, native size (from the position
    rows: 37 x 37 -> 518 for the releases), registers, MLP kind, and DINOv2's numerics.

    Raises:
        ValueError: a tensor has a shape no DINOv2 model has.
    """
    proj = _tensor(state, "patch_embed.proj.weight", 4)  # (D, C, ph, pw)
    width, in_chans, ph, pw = (int(n) for n in proj.shape)
    if width % HEAD_DIM:
        raise ValueError(f"the width {width} is not a multiple of DINOv2's head size "
                         f"{HEAD_DIM}, so the head count cannot be read off the file")
    reg = state.get("reg_token")
    registers = int(reg.shape[1]) if reg is not None else 0
    side = _grid_side(state, prefix_rows=0 if registers else 1)
    return {
        "img_size": (side * ph, side * pw), "patch_size": (ph, pw), "in_chans": in_chans,
        "num_classes": 0, "embed_dim": width, "depth": _depth(state),
        "num_heads": width // HEAD_DIM, **_mlp_fields(state),
        "qkv_bias": "blocks.0.attn.qkv.bias" in state,
        "patch_bias": "patch_embed.proj.bias" in state,
        "class_token": True, "global_pool": "token",
        # the hub builders' placeholder; the file's gammas replace it
        "init_values": 1.0 if "blocks.0.ls1.gamma" in state else None,
        "norm_eps": 1e-6, "act_layer": "gelu", "gelu_approximate": "none",
        "reg_tokens": registers, "no_embed_class": bool(registers),
        # any multiple of the patch, as the original; resampled by the variant's own rule
        "dynamic_img_size": True,
        "pos_embed_resample": "dinov2_reg" if registers else "dinov2",
        "pos_embed_antialias": bool(registers),
    }


def preprocessing(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """timm's ``lvd142m`` cfg: ImageNet mean/std, bicubic, the native size at crop_pct 1.0.

    (The original's own evaluation transform is Resize(256) + CenterCrop(224), bicubic.)
    """
    return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "interpolation": "bicubic",
            "crop_pct": 1.0, "crop_mode": "center", "num_classes": 0, "license": "apache-2.0",
            "paper": f"{DINOV2_PAPER}; {REGISTERS_PAPER}" if "reg_token" in state
            else DINOV2_PAPER}
