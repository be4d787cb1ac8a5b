"""Hugging Face transformers ``ViT*`` / ``DeiT*`` checkpoints and their ``config.json``.

Keys on disk (every hub file, and what ``save_pretrained`` writes even in transformers 5.x) and
the 5.x in-memory names are both read; q, k, v Linears are fused into ``qkv``. Numerics come
from ``config.json``: ``layer_norm_eps`` (1e-12 by default there, not 1e-6) and ``hidden_act``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from .json_fields import get_bool, get_float, get_int, get_mapping, get_pair, get_str
from .rename import RenameTable, Rule

_DISK = "{p}encoder.layer.{i}."
_MEM = "{p}layers.{i}."


def _rules(prefix: str) -> list[Rule]:
    d, m = _DISK.replace("{p}", prefix), _MEM.replace("{p}", prefix)
    e = f"{prefix}embeddings."
    return [
        Rule(e + "cls_token", "cls_token"),
        Rule(e + "distillation_token", "dist_token"),
        Rule(e + "position_embeddings", "pos_embed"),
        Rule(e + "patch_embeddings.projection.weight", "patch_embed.proj.weight"),
        Rule(e + "patch_embeddings.projection.bias", "patch_embed.proj.bias"),
        Rule(d + "layernorm_before.weight", "blocks.{i}.norm1.weight"),
        Rule(d + "layernorm_before.bias", "blocks.{i}.norm1.bias"),
        Rule(d + "attention.attention.query.weight", "blocks.{i}.attn.qkv.weight", part=(0, 3)),
        Rule(d + "attention.attention.key.weight", "blocks.{i}.attn.qkv.weight", part=(1, 3)),
        Rule(d + "attention.attention.value.weight", "blocks.{i}.attn.qkv.weight", part=(2, 3)),
        Rule(d + "attention.attention.query.bias", "blocks.{i}.attn.qkv.bias", part=(0, 3)),
        Rule(d + "attention.attention.key.bias", "blocks.{i}.attn.qkv.bias", part=(1, 3)),
        Rule(d + "attention.attention.value.bias", "blocks.{i}.attn.qkv.bias", part=(2, 3)),
        Rule(d + "attention.output.dense.weight", "blocks.{i}.attn.proj.weight"),
        Rule(d + "attention.output.dense.bias", "blocks.{i}.attn.proj.bias"),
        Rule(d + "layernorm_after.weight", "blocks.{i}.norm2.weight"),
        Rule(d + "layernorm_after.bias", "blocks.{i}.norm2.bias"),
        Rule(d + "intermediate.dense.weight", "blocks.{i}.mlp.fc1.weight"),
        Rule(d + "intermediate.dense.bias", "blocks.{i}.mlp.fc1.bias"),
        Rule(d + "output.dense.weight", "blocks.{i}.mlp.fc2.weight"),
        Rule(d + "output.dense.bias", "blocks.{i}.mlp.fc2.bias"),
        Rule(m + "layernorm_before.weight", "blocks.{i}.norm1.weight"),
        Rule(m + "layernorm_before.bias", "blocks.{i}.norm1.bias"),
        Rule(m + "attention.q_proj.weight", "blocks.{i}.attn.qkv.weight", part=(0, 3)),
        Rule(m + "attention.k_proj.weight", "blocks.{i}.attn.qkv.weight", part=(1, 3)),
        Rule(m + "attention.v_proj.weight", "blocks.{i}.attn.qkv.weight", part=(2, 3)),
        Rule(m + "attention.q_proj.bias", "blocks.{i}.attn.qkv.bias", part=(0, 3)),
        Rule(m + "attention.k_proj.bias", "blocks.{i}.attn.qkv.bias", part=(1, 3)),
        Rule(m + "attention.v_proj.bias", "blocks.{i}.attn.qkv.bias", part=(2, 3)),
        Rule(m + "attention.o_proj.weight", "blocks.{i}.attn.proj.weight"),
        Rule(m + "attention.o_proj.bias", "blocks.{i}.attn.proj.bias"),
        Rule(m + "layernorm_after.weight", "blocks.{i}.norm2.weight"),
        Rule(m + "layernorm_after.bias", "blocks.{i}.norm2.bias"),
        Rule(m + "mlp.fc1.weight", "blocks.{i}.mlp.fc1.weight"),
        Rule(m + "mlp.fc1.bias", "blocks.{i}.mlp.fc1.bias"),
        Rule(m + "mlp.fc2.weight", "blocks.{i}.mlp.fc2.weight"),
        Rule(m + "mlp.fc2.bias", "blocks.{i}.mlp.fc2.bias"),
        Rule(f"{prefix}layernorm.weight", "norm.weight"),
        Rule(f"{prefix}layernorm.bias", "norm.bias"),
    ]


# ViTModel's pooler (Linear + tanh on the class token) is vitzoo's representation layer; the
# classification models build their ViTModel without it.
_POOLER = [
    Rule("pooler.dense.weight", "pre_logits.fc.weight"),
    Rule("pooler.dense.bias", "pre_logits.fc.bias"),
]


_HEADS = [
    Rule("classifier.weight", "head.weight"),
    Rule("classifier.bias", "head.bias"),
    Rule("cls_classifier.weight", "head.weight"),
    Rule("cls_classifier.bias", "head.bias"),
    Rule("distillation_classifier.weight", "head_dist.weight"),
    Rule("distillation_classifier.bias", "head_dist.bias"),
]

# ViTForImageClassification (``vit.``), DeiT*WithTeacher (``deit.``), ViTModel (no prefix).
TABLES = {
    "vit.": RenameTable(_rules("vit.") + _HEADS[:2]),
    "deit.": RenameTable(_rules("deit.") + _HEADS[2:]),
    "": RenameTable(_rules("") + _POOLER),
}

# What vitzoo writes (transformers 4.x/5.x on-disk names, ViTForImageClassification or
# DeiTForImageClassificationWithTeacher).
_EXPORT = {
    False: RenameTable([r for r in _rules("vit.") if ".layers." not in r[0]] + _HEADS[:2]),
    True: RenameTable([r for r in _rules("deit.") if ".layers." not in r[0]] + _HEADS[2:]),
}

GELU = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh"}


def _prefix(state: Mapping[str, torch.Tensor]) -> str | None:
    for prefix in ("vit.", "deit.", ""):
        if f"{prefix}embeddings.patch_embeddings.projection.weight" in state:
            return prefix
    return None


def detect(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` has Hugging Face ViT/DeiT names."""
    return _prefix(state) is not None


def to_vitzoo(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Renamed tensors and the keys that have no vitzoo place."""
    return TABLES[_prefix(state) or ""].to_vitzoo(state)


def from_vitzoo(state: Mapping[str, torch.Tensor], *, distilled: bool
                ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """vitzoo tensors in the on-disk names of ViTForImageClassification (or DeiT with teacher)."""
    return _EXPORT[distilled].from_vitzoo(state)


def config_fields(hf: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """ViTConfig fields from a transformers ``config.json`` (and the weights' heads).

    Raises:
        ValueError: a field missing or of the wrong type (named), or a model type or
            activation vitzoo cannot reproduce.
    """
    model_type = hf.get("model_type")
    if model_type not in ("vit", "deit"):
        raise ValueError(f"model_type {model_type!r} is not a ViT or DeiT")
    act = get_str(hf, "hidden_act", "gelu")
    if act not in GELU:
        raise ValueError(f"hidden_act={act!r} is not a GELU vitzoo reproduces "
                         f"({', '.join(GELU)})")
    renamed, _ = to_vitzoo(state)
    distilled = "dist_token" in renamed
    if distilled and "head_dist.weight" not in renamed:
        raise ValueError("a DeiT with a distillation token but a single classifier "
                         "(DeiTForImageClassification) has no vitzoo equivalent; use the "
                         "WithTeacher checkpoint")
    head = renamed.get("head.weight")
    fields: dict[str, Any] = {
        "embed_dim": get_int(hf, "hidden_size"), "depth": get_int(hf, "num_hidden_layers"),
        "num_heads": get_int(hf, "num_attention_heads"),
        "mlp_dim": get_int(hf, "intermediate_size"),
        "img_size": get_pair(hf, "image_size", 224), "patch_size": get_pair(hf, "patch_size", 16),
        "in_chans": get_int(hf, "num_channels", 3), "qkv_bias": get_bool(hf, "qkv_bias", True),
        "gelu_approximate": GELU[act],
        "norm_eps": get_float(hf, "layer_norm_eps", 1e-12, positive=True),
        "distilled": distilled,
        "num_classes": int(head.shape[0]) if head is not None and head.ndim == 2 else 0,
        "class_token": True, "global_pool": "token",
    }
    pooler = renamed.get("pre_logits.fc.weight")
    if pooler is not None:
        pooler_act = get_str(hf, "pooler_act", "tanh")
        if pooler_act != "tanh":
            raise ValueError(f"pooler_act={pooler_act!r} is not tanh")
        if pooler.ndim != 2:
            raise ValueError(f"pooler.dense.weight has shape {tuple(pooler.shape)}, not 2-D")
        fields["representation_size"] = int(pooler.shape[0])
    return fields


def labels(hf: Mapping[str, Any]) -> list[str] | None:
    """Class names from ``id2label``, in index order.

    Raises:
        ValueError: ``id2label`` is not an object of ``"index": "name"`` strings, or its
            indices are not 0 .. N-1.
    """
    if not hf.get("id2label"):
        return None
    id2label = get_mapping(hf, "id2label")
    index = {}
    for key, name in id2label.items():
        if not (isinstance(key, str) and re.fullmatch(r"\d{1,9}", key)
                and isinstance(name, str)):
            raise ValueError(f"field 'id2label' must map indices (\"0\", \"1\" ...) to "
                             f"class names, got {key!r}: {name!r}")
        index[int(key)] = name
    if sorted(index) != list(range(len(index))):
        raise ValueError(f"field 'id2label' must number the classes 0 .. {len(index) - 1}")
    return [index[i] for i in range(len(index))]
