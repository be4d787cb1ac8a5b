"""The same model in vitzoo, timm and Hugging Face transformers, with identical weights.

timm and transformers are never dependencies of vitzoo: they are imported here only when
present, and a missing one is reported as "not installed".
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ..convert import convert_checkpoint
from ..factory import create_model
from ..io import save_model
from ..models import VisionTransformer
from ..registry import resolve_name
from .machine import library_version

__all__ = ["LIBRARIES", "ModelSpec", "build_peer", "forward_of"]

LIBRARIES = ("vitzoo", "timm", "transformers")


@dataclass(frozen=True)
class ModelSpec:
    """A registered model name plus constructor overrides (``--quick`` shrinks the model)."""

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def arch(self) -> str:
        return resolve_name(self.name)[0]

    @property
    def label(self) -> str:
        if not self.overrides:
            return self.name
        return f"{self.name}[{','.join(f'{k}={v}' for k, v in self.overrides.items())}]"

    def build(self, **kwargs: Any) -> VisionTransformer:
        # a registered name without features_only: create_model builds a VisionTransformer
        return cast(VisionTransformer, create_model(self.name, **self.overrides, **kwargs))


def _timm(spec: ModelSpec, model: VisionTransformer) -> nn.Module:
    import timm

    peer: nn.Module = timm.create_model(spec.arch, pretrained=False,
                                        num_classes=model.cfg.num_classes,
                                        **spec.overrides)
    peer.load_state_dict(model.state_dict())
    return peer


def _transformers(spec: ModelSpec, model: VisionTransformer) -> nn.Module:
    from transformers import ViTForImageClassification

    with tempfile.TemporaryDirectory() as tmp:
        src = save_model(model, Path(tmp) / "model.safetensors")
        hf_dir = convert_checkpoint(src, Path(tmp) / "hf", target_format="hf")
        peer: nn.Module = ViTForImageClassification.from_pretrained(
            str(hf_dir), attn_implementation="sdpa")
        return peer


def build_peer(library: str, spec: ModelSpec, model: VisionTransformer) -> nn.Module | None:
    """``library``'s version of ``model`` (vitzoo's own, for "vitzoo") holding the same weights,
    on the same device and dtype; ``None`` when that library is not installed."""
    if library == "vitzoo":
        return model
    if library_version(library) is None:
        return None
    param = next(model.parameters())
    cpu = model.to("cpu", torch.float32)
    try:
        peer = (_timm if library == "timm" else _transformers)(spec, cpu)
    finally:
        model.to(param.device, param.dtype)
    return peer.to(param.device, param.dtype)


def forward_of(library: str, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function from images to logits for ``library``'s model."""
    if library == "transformers":
        return lambda x: model(pixel_values=x).logits
    return model
