"""``FeatureHookNet``: a backbone that returns chosen blocks' raw outputs, taken by forward hooks.

timm's ``feature_cls="hook"`` for Vision Transformers: the whole model runs (its classifier
removed) and each chosen block's output, every token ``(B, P + N, D)``, is returned as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from ..errors import UnsupportedOptionError
from .feature_info import FeatureInfo
from .vision_transformer import VisionTransformer

__all__ = ["FeatureHookNet"]

_HEAD_KEYS = ("num_classes", "classifier", "global_pool")


class FeatureHookNet(nn.Module):
    """Every chosen block's output ``(B, P + N, D)``, collected by forward hooks.

    timm's class of the same name, as it works on a ViT (``no_rewrite``): the classifier is
    removed (``reset_classifier(0)``), nothing else is pruned, and the outputs come in the
    order of ``out_indices`` as given.

    Args:
        model: a vitzoo model with ``feature_info``.
        out_indices: indices into ``model.feature_info`` (negative from the end), or an int n
            for the last n blocks.
        out_map: names of the outputs in the dict ``return_dict`` gives (default: the block
            module names, e.g. ``"blocks.11"``).
        return_dict: return ``{name: tensor}`` instead of a list.
        output_fmt: only ``"NCHW"``, timm's default, which leaves the tokens as they are.

    Attributes:
        body: the model.
        feature_info: a :class:`FeatureInfo` with ``out_indices`` as given.
    """

    def __init__(self, model: nn.Module, out_indices: int | Sequence[int] = (0, 1, 2, 3, 4),
                 out_map: Sequence[int | str] | None = None, return_dict: bool = False,
                 output_fmt: str = "NCHW") -> None:
        super().__init__()
        if output_fmt != "NCHW":
            raise UnsupportedOptionError("FeatureHookNet returns the blocks' outputs as they "
                                         "are; use feature_cls='getter' for output_fmt='NLC'")
        # a vitzoo model: the attributes used here are VisionTransformer's
        backbone = cast(VisionTransformer, model)
        self.feature_info = FeatureInfo(backbone.feature_info, out_indices)
        names = self.feature_info.module_name()
        if out_map is not None and len(out_map) != len(names):
            raise UnsupportedOptionError(f"out_map has {len(out_map)} names for {len(names)} "
                                         "outputs")
        self.return_dict = return_dict
        self.output_fmt = output_fmt
        self._ids = [str(out_map[i]) if out_map is not None else name
                     for i, name in enumerate(names)]
        self._outputs: dict[str, torch.Tensor] = {}
        if hasattr(model, "reset_classifier"):
            backbone.reset_classifier(0)
        self.body = backbone
        modules = dict(model.named_modules())
        for hook_id, name in zip(self._ids, names, strict=True):
            modules[name].register_forward_hook(self._collector(hook_id))
        pretrained_cfg = getattr(model, "pretrained_cfg", {})
        self.pretrained_cfg = {k: v for k, v in pretrained_cfg.items() if k not in _HEAD_KEYS}
        self.in_chans = getattr(getattr(model, "cfg", None), "in_chans", 3)

    def _collector(self, hook_id: str) -> Any:
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            self._outputs[hook_id] = output

        return hook

    @property
    def default_cfg(self) -> dict[str, Any]:
        """``pretrained_cfg`` under timm's older name."""
        return self.pretrained_cfg

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the blocks' activations in the backward pass (the model's switch)."""
        self.body.set_grad_checkpointing(enable)

    def forward(self, x: torch.Tensor) -> Any:
        """The chosen blocks' outputs for images ``x``: a list in ``out_indices`` order, or a
        dict with ``return_dict``."""
        self._outputs = {}
        self.body(x)
        # in hook registration order: a checkpointed block's recompute fires its hook again
        outputs, self._outputs = self._outputs, {}
        if self.return_dict:
            return {k: outputs[k] for k in self._ids}
        return [outputs[k] for k in self._ids]
