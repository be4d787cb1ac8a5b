"""Explaining in words why a checkpoint does not fit a model, and which architecture it is."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["CheckpointFacts", "explain_mismatch", "matching_architectures"]


@dataclass(frozen=True)
class CheckpointFacts:
    """What a vitzoo-layout state dict says about its architecture."""

    width: int | None
    depth: int
    patch: tuple[int, int] | None
    grid_tokens: int | None
    class_token: bool
    distilled: bool
    hybrid: bool
    num_classes: int
    layer_scale: bool
    map_head: bool
    representation: bool

    @classmethod
    def of(cls, state: Mapping[str, torch.Tensor]) -> CheckpointFacts:
        proj = state.get("patch_embed.proj.weight")
        width = int(proj.shape[0]) if proj is not None else None
        hybrid = any(k.startswith("patch_embed.backbone.") for k in state)
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
        prefix = int("cls_token" in state) + int("dist_token" in state)
        pos = state.get("pos_embed")
        head = state.get("head.weight")
        return cls(
            width=width, depth=len(blocks),
            patch=tuple(proj.shape[-2:]) if proj is not None and not hybrid else None,
            grid_tokens=int(pos.shape[1]) - prefix if pos is not None else None,
            class_token="cls_token" in state, distilled="dist_token" in state, hybrid=hybrid,
            num_classes=int(head.shape[0]) if head is not None else 0,
            layer_scale=any(k.endswith("ls1.gamma") for k in state),
            map_head="attn_pool.latent" in state,
            representation="pre_logits.fc.weight" in state,
        )


@functools.lru_cache(maxsize=1)
def _registered_facts() -> tuple[tuple[str, CheckpointFacts], ...]:
    from .registry import get_builder, list_models

    found = []
    for name in list_models():
        with torch.device("meta"):
            model = get_builder(name)()
        found.append((name, CheckpointFacts.of(model.state_dict())))
    return tuple(found)


def matching_architectures(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Registered architectures whose shapes fit ``state`` (the head and representation layer
    aside), the ``vit_*`` names first."""
    facts = CheckpointFacts.of(state)
    keep = ("width", "depth", "patch", "grid_tokens", "class_token", "distilled", "hybrid",
            "layer_scale", "map_head")
    found = [name for name, other in _registered_facts()
             if all(getattr(facts, k) == getattr(other, k) for k in keep)]
    return sorted(found, key=lambda name: (not name.startswith("vit_"), name))


def explain_mismatch(state: Mapping[str, torch.Tensor], model: nn.Module) -> list[str]:
    """Sentences naming each architectural difference between ``state`` and ``model``."""
    file, own = CheckpointFacts.of(state), CheckpointFacts.of(model.state_dict())
    lines = []
    if file.distilled and not own.distilled:
        lines.append("this is a DeiT checkpoint with a distillation token; the model has none")
    if own.distilled and not file.distilled:
        lines.append("the model has a distillation token; the checkpoint has none")
    if file.hybrid != own.hybrid:
        which = "the checkpoint" if file.hybrid else "the model"
        lines.append(f"{which} has a ResNet stem (an R+ViT hybrid), the other does not")
    if (file.width, file.depth) != (own.width, own.depth):
        lines.append(f"the checkpoint is {file.width} wide with {file.depth} blocks, the model "
                     f"{own.width} wide with {own.depth} blocks")
    if file.patch != own.patch and file.patch and own.patch:
        lines.append(f"the checkpoint has {file.patch[0]}x{file.patch[1]} patches, the model "
                     f"{own.patch[0]}x{own.patch[1]}")
    if file.grid_tokens != own.grid_tokens and file.grid_tokens and own.grid_tokens:
        lines.append(f"the checkpoint's position table covers {file.grid_tokens} patches, the "
                     f"model's {own.grid_tokens}: the image sizes differ")
    if file.class_token != own.class_token:
        lines.append("the checkpoint " + ("has" if file.class_token else "has no")
                     + " class token, the model " + ("has" if own.class_token else "has none"))
    if file.num_classes != own.num_classes:
        lines.append(f"the checkpoint's head has {file.num_classes} classes, the model's "
                     f"{own.num_classes}: pass num_classes={file.num_classes}, or "
                     "strict=False to keep the model's head")
    candidates = matching_architectures(state)
    if candidates and lines:
        lines.append("architectures that fit the checkpoint: " + ", ".join(candidates[:5]))
    return lines
