"""``model_info``: what an architecture is, without allocating its weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .config import ViTConfig
from .models import VisionTransformer
from .pretrained import get_entry, tags_for
from .registry import build, list_aliases, resolve_name

__all__ = ["ModelInfo", "count_flops", "count_params", "model_info"]


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a registered architecture at its native input size."""

    name: str
    config: ViTConfig
    num_params: int
    """Parameters with the architecture's default head (1000 classes unless said otherwise)."""
    gflops: float
    """Multiply-adds per image in billions (the convention of the ViT/DeiT papers and timm)."""
    model_class: str
    tags: list[str] = field(default_factory=list)
    """Pretrained tags, the default first."""
    aliases: list[str] = field(default_factory=list)
    weights: dict[str, Any] | None = None
    """The pretrained entry of the tag named (or of the default tag): sources, preprocessing,
    origin numerics, license, paper, reported accuracy."""

    @property
    def default_tag(self) -> str | None:
        return self.tags[0] if self.tags else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_class": self.model_class,
            "num_params": self.num_params,
            "gflops": self.gflops,
            "default_tag": self.default_tag,
            "tags": list(self.tags),
            "aliases": list(self.aliases),
            "weights": self.weights,
            "config": self.config.to_dict(),
        }


def count_params(model: nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-adds of one forward pass on a single ``(C, H, W)`` image.

    Matmuls, convolutions and attention are counted; norms, activations and softmax are not
    (the fvcore/timm convention). Runs on the meta device when the model is there.
    """
    device = next(model.parameters()).device
    x = torch.empty(1, *input_size, device=device)
    # parameters stop requiring grad while counting: the counter's module tracker hooks every
    # module input that requires grad, and fails on a parameter passed as one under no_grad
    # (the MAP head's probe)
    wanted = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in wanted:
            p.requires_grad_(False)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    finally:
        for p, flag in wanted:
            p.requires_grad_(flag)
    flops: int = counter.get_total_flops()  # `counter` is untyped: FlopCounterMode.__enter__
    return flops // 2  # the counter counts a multiply-add as two


def _arch_flops(arch: str, model: VisionTransformer) -> int:
    """:func:`count_flops` of ``model``, counted on copies of the architecture one and two
    blocks deep when all its blocks are alike (the same modules and shapes): the count is then
    linear in the depth, and the shallow copies count 5 to 15 times faster. Other models are
    counted whole."""
    cfg = model.cfg
    size = (cfg.in_chans, *cfg.img_size)
    blocks = getattr(model, "blocks", None)
    if cfg.depth <= 2 or not isinstance(blocks, nn.Sequential) or len(blocks) != cfg.depth \
            or len({repr(block) for block in blocks}) != 1:
        return count_flops(model, size)
    try:
        with torch.device("meta"):
            one, two = (count_flops(build(arch, depth=d), size) for d in (1, 2))
    except Exception:  # noqa: BLE001 - a builder that does not take depth: count it whole
        return count_flops(model, size)
    return one + (cfg.depth - 1) * (two - one)


def model_info(name: str) -> ModelInfo:
    """Configuration, parameter count, GFLOPs, tags, aliases and weights of an architecture
    (``name`` may carry a tag; the default tag's weights are described otherwise).

    The model is built on the meta device, so no weights are allocated.
    """
    arch, tag = resolve_name(name)
    with torch.device("meta"):
        model = build(arch)
    cfg = model.cfg
    return ModelInfo(
        name=arch,
        config=cfg,
        num_params=count_params(model),
        gflops=_arch_flops(arch, model) / 1e9,
        model_class=type(model).__name__,
        tags=tags_for(arch),
        aliases=list(list_aliases(arch)),
        weights=({**entry.to_dict(), "numerics": entry.numerics}
                 if (entry := get_entry(arch, tag)) is not None else None),
    )
