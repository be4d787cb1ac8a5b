"""Optimizers: SGD with momentum (the release) or AdamW with layer-wise lr decay."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from .config import TrainConfig

__all__ = ["create_optimizer", "layer_id"]


def layer_id(name: str, depth: int) -> int:
    """0 for the stem (tokens, position and patch embeddings), i + 1 for block i, depth + 1
    for everything after the blocks (norm, pooling, head)."""
    if re.match(r"^(cls_token|dist_token|pos_embed|patch_embed)", name):
        return 0
    match = re.match(r"^blocks\.(\d+)\.", name)
    if match:
        return int(match.group(1)) + 1
    return depth + 1


def create_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of ``cfg``. Biases, norms, tokens and position embeddings get no weight
    decay; with ``layer_decay`` each depth gets its own lr scale (``group["lr_scale"]``)."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    depth = len(getattr(model, "blocks", []))
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name in skip
        layer = layer_id(name, depth) if cfg.layer_decay is not None else 0
        group = groups.setdefault((layer, no_decay), {
            "params": [], "weight_decay": 0.0 if no_decay else cfg.weight_decay,
            "lr_scale": (cfg.layer_decay ** (depth + 1 - layer)
                         if cfg.layer_decay is not None else 1.0),
        })
        group["params"].append(param)
    param_groups = [groups[k] for k in sorted(groups)]
    for group in param_groups:
        group["lr"] = cfg.lr * group["lr_scale"]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=cfg.betas)
