"""The original PyTorch port of Google's ViT (jeonsworld/ViT-pytorch, the code of the ViT
tutorials): ``transformer.encoder.layer.N.attn.query`` ... and its R50 hybrid.

Fine-tuned files are ``torch.save(model.state_dict())``. That code runs exact GELU with
LayerNorm eps 1e-6.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .rename import RenameTable, Rule

_E = "transformer.embeddings."
_L = "transformer.encoder.layer.{i}."
_H = _E + "hybrid_model."
_U = _H + "body.block{s+1}.unit{u+1}."  # 1-based in the port, 0-based in timm
_S = "patch_embed.backbone.stages.{s}.blocks.{u}."

_RULES = [
    Rule(_E + "cls_token", "cls_token"),
    Rule(_E + "position_embeddings", "pos_embed"),
    Rule(_E + "patch_embeddings.weight", "patch_embed.proj.weight"),
    Rule(_E + "patch_embeddings.bias", "patch_embed.proj.bias"),
    Rule(_L + "attention_norm.weight", "blocks.{i}.norm1.weight"),
    Rule(_L + "attention_norm.bias", "blocks.{i}.norm1.bias"),
    Rule(_L + "attn.query.weight", "blocks.{i}.attn.qkv.weight", part=(0, 3)),
    Rule(_L + "attn.key.weight", "blocks.{i}.attn.qkv.weight", part=(1, 3)),
    Rule(_L + "attn.value.weight", "blocks.{i}.attn.qkv.weight", part=(2, 3)),
    Rule(_L + "attn.query.bias", "blocks.{i}.attn.qkv.bias", part=(0, 3)),
    Rule(_L + "attn.key.bias", "blocks.{i}.attn.qkv.bias", part=(1, 3)),
    Rule(_L + "attn.value.bias", "blocks.{i}.attn.qkv.bias", part=(2, 3)),
    Rule(_L + "attn.out.weight", "blocks.{i}.attn.proj.weight"),
    Rule(_L + "attn.out.bias", "blocks.{i}.attn.proj.bias"),
    Rule(_L + "ffn_norm.weight", "blocks.{i}.norm2.weight"),
    Rule(_L + "ffn_norm.bias", "blocks.{i}.norm2.bias"),
    Rule(_L + "ffn.fc1.weight", "blocks.{i}.mlp.fc1.weight"),
    Rule(_L + "ffn.fc1.bias", "blocks.{i}.mlp.fc1.bias"),
    Rule(_L + "ffn.fc2.weight", "blocks.{i}.mlp.fc2.weight"),
    Rule(_L + "ffn.fc2.bias", "blocks.{i}.mlp.fc2.bias"),
    Rule("transformer.encoder.encoder_norm.weight", "norm.weight"),
    Rule("transformer.encoder.encoder_norm.bias", "norm.bias"),
    Rule("head.weight", "head.weight"),
    Rule("head.bias", "head.bias"),
    Rule(_H + "root.conv.weight", "patch_embed.backbone.stem.conv.weight"),
    Rule(_H + "root.gn.weight", "patch_embed.backbone.stem.norm.weight"),
    Rule(_H + "root.gn.bias", "patch_embed.backbone.stem.norm.bias"),
]
for _c in ("1", "2", "3"):
    _RULES += [
        Rule(_U + f"conv{_c}.weight", _S + f"conv{_c}.weight"),
        Rule(_U + f"gn{_c}.weight", _S + f"norm{_c}.weight"),
        Rule(_U + f"gn{_c}.bias", _S + f"norm{_c}.bias"),
    ]
_RULES += [
    Rule(_U + "downsample.weight", _S + "downsample.conv.weight"),
    Rule(_U + "gn_proj.weight", _S + "downsample.norm.weight"),
    Rule(_U + "gn_proj.bias", _S + "downsample.norm.bias"),
]


RENAMES = RenameTable(_RULES)


def detect(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("transformer.embeddings.") for k in state)


def to_vitzoo(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    return RENAMES.to_vitzoo(state)


def from_vitzoo(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    return RENAMES.from_vitzoo(state)
