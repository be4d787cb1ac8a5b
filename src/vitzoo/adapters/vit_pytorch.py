"""The original PyTorch port of Google's ViT (jeonsworld/ViT-pytorch, the code of the ViT
tutorials): ``transformer.encoder.layer.N.attn.query`` ... and its R50 hybrid.

Fine-tuned files are ``torch.save(model.state_dict())``. That code runs exact GELU with
LayerNorm eps 1e-6.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ._rename import RenameTable

_E = "transformer.embeddings."
_L = "transformer.encoder.layer.{i}."
_H = _E + "hybrid_model."
_U = _H + "body.block{s1}.unit{u1}."
_S = "patch_embed.backbone.stages.{s}.blocks.{u}."

_RULES = [
    (_E + "cls_token", "cls_token", None),
    (_E + "position_embeddings", "pos_embed", None),
    (_E + "patch_embeddings.weight", "patch_embed.proj.weight", None),
    (_E + "patch_embeddings.bias", "patch_embed.proj.bias", None),
    (_L + "attention_norm.weight", "blocks.{i}.norm1.weight", None),
    (_L + "attention_norm.bias", "blocks.{i}.norm1.bias", None),
    (_L + "attn.query.weight", "blocks.{i}.attn.qkv.weight", (0, 3)),
    (_L + "attn.key.weight", "blocks.{i}.attn.qkv.weight", (1, 3)),
    (_L + "attn.value.weight", "blocks.{i}.attn.qkv.weight", (2, 3)),
    (_L + "attn.query.bias", "blocks.{i}.attn.qkv.bias", (0, 3)),
    (_L + "attn.key.bias", "blocks.{i}.attn.qkv.bias", (1, 3)),
    (_L + "attn.value.bias", "blocks.{i}.attn.qkv.bias", (2, 3)),
    (_L + "attn.out.weight", "blocks.{i}.attn.proj.weight", None),
    (_L + "attn.out.bias", "blocks.{i}.attn.proj.bias", None),
    (_L + "ffn_norm.weight", "blocks.{i}.norm2.weight", None),
    (_L + "ffn_norm.bias", "blocks.{i}.norm2.bias", None),
    (_L + "ffn.fc1.weight", "blocks.{i}.mlp.fc1.weight", None),
    (_L + "ffn.fc1.bias", "blocks.{i}.mlp.fc1.bias", None),
    (_L + "ffn.fc2.weight", "blocks.{i}.mlp.fc2.weight", None),
    (_L + "ffn.fc2.bias", "blocks.{i}.mlp.fc2.bias", None),
    ("transformer.encoder.encoder_norm.weight", "norm.weight", None),
    ("transformer.encoder.encoder_norm.bias", "norm.bias", None),
    ("head.weight", "head.weight", None),
    ("head.bias", "head.bias", None),
    (_H + "root.conv.weight", "patch_embed.backbone.stem.conv.weight", None),
    (_H + "root.gn.weight", "patch_embed.backbone.stem.norm.weight", None),
    (_H + "root.gn.bias", "patch_embed.backbone.stem.norm.bias", None),
]
for _c in ("1", "2", "3"):
    _RULES += [
        (_U + f"conv{_c}.weight", _S + f"conv{_c}.weight", None),
        (_U + f"gn{_c}.weight", _S + f"norm{_c}.weight", None),
        (_U + f"gn{_c}.bias", _S + f"norm{_c}.bias", None),
    ]
_RULES += [
    (_U + "downsample.weight", _S + "downsample.conv.weight", None),
    (_U + "gn_proj.weight", _S + "downsample.norm.weight", None),
    (_U + "gn_proj.bias", _S + "downsample.norm.bias", None),
]


class _UnitNumbers(RenameTable):
    """Google's 1-based ``block{s1}.unit{u1}`` <-> timm's 0-based ``stages.{s}.blocks.{u}``."""

    def to_vitzoo(self, state):  # type: ignore[override]
        out, unmatched = super().to_vitzoo(state)
        return {_shift(k, -1): v for k, v in out.items()}, unmatched

    def from_vitzoo(self, state):  # type: ignore[override]
        return super().from_vitzoo({_shift(k, +1): v for k, v in state.items()})


def _shift(key: str, delta: int) -> str:
    import re

    def bump(m: re.Match[str]) -> str:
        return f"stages.{int(m.group(1)) + delta}.blocks.{int(m.group(2)) + delta}."

    return re.sub(r"stages\.(\d+)\.blocks\.(\d+)\.", bump, key)


RENAMES = _UnitNumbers([(src.replace("{s1}", "{s}").replace("{u1}", "{u}"), dst, part)
                        for src, dst, part in _RULES])


def detect(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("transformer.embeddings.") for k in state)


def to_vitzoo(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    return RENAMES.to_vitzoo(state)


def from_vitzoo(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    return RENAMES.from_vitzoo(state)
