"""torchvision ``vit_b_16`` and friends (``torchvision.models.VisionTransformer``).

``self_attention.in_proj_weight`` has the same q, k, v row order as vitzoo's ``qkv``; the MLP is
``mlp.0`` / ``mlp.3`` (``mlp.linear_1`` / ``linear_2`` in files saved before torchvision 0.13).
LayerNorm eps 1e-6 and exact GELU, as in vitzoo's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .rename import RenameTable, Rule

_L = "encoder.layers.encoder_layer_{i}."

RENAMES = RenameTable([
    Rule("class_token", "cls_token"),
    Rule("conv_proj.weight", "patch_embed.proj.weight"),
    Rule("conv_proj.bias", "patch_embed.proj.bias"),
    Rule("encoder.pos_embedding", "pos_embed"),
    Rule(_L + "ln_1.weight", "blocks.{i}.norm1.weight"),
    Rule(_L + "ln_1.bias", "blocks.{i}.norm1.bias"),
    Rule(_L + "self_attention.in_proj_weight", "blocks.{i}.attn.qkv.weight"),
    Rule(_L + "self_attention.in_proj_bias", "blocks.{i}.attn.qkv.bias"),
    Rule(_L + "self_attention.out_proj.weight", "blocks.{i}.attn.proj.weight"),
    Rule(_L + "self_attention.out_proj.bias", "blocks.{i}.attn.proj.bias"),
    Rule(_L + "ln_2.weight", "blocks.{i}.norm2.weight"),
    Rule(_L + "ln_2.bias", "blocks.{i}.norm2.bias"),
    Rule(_L + "mlp.0.weight", "blocks.{i}.mlp.fc1.weight"),
    Rule(_L + "mlp.0.bias", "blocks.{i}.mlp.fc1.bias"),
    Rule(_L + "mlp.3.weight", "blocks.{i}.mlp.fc2.weight"),
    Rule(_L + "mlp.3.bias", "blocks.{i}.mlp.fc2.bias"),
    Rule(_L + "mlp.linear_1.weight", "blocks.{i}.mlp.fc1.weight"),  # before 0.13
    Rule(_L + "mlp.linear_1.bias", "blocks.{i}.mlp.fc1.bias"),
    Rule(_L + "mlp.linear_2.weight", "blocks.{i}.mlp.fc2.weight"),
    Rule(_L + "mlp.linear_2.bias", "blocks.{i}.mlp.fc2.bias"),
    Rule("encoder.ln.weight", "norm.weight"),
    Rule("encoder.ln.bias", "norm.bias"),
    Rule("heads.pre_logits.weight", "pre_logits.fc.weight"),
    Rule("heads.pre_logits.bias", "pre_logits.fc.bias"),
    Rule("heads.head.weight", "head.weight"),
    Rule("heads.head.bias", "head.bias"),
])
_CURRENT = RenameTable([r for r in RENAMES.rules if "linear_" not in r.source])


def detect(state: Mapping[str, torch.Tensor]) -> bool:
    return "conv_proj.weight" in state and "encoder.pos_embedding" in state


def to_vitzoo(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    return RENAMES.to_vitzoo(state)


def from_vitzoo(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """vitzoo tensors in torchvision's current names (``mlp.0`` / ``mlp.3``)."""
    return _CURRENT.from_vitzoo(state)
