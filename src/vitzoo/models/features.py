"""The ``features_only`` wrapper: a backbone that returns the feature maps of chosen blocks.

``create_model(name, features_only=True, out_indices=...)`` returns a :class:`FeatureGetterNet`
(timm's feature class for ViTs, ``feature_cls="getter"``) or, with ``feature_cls="hook"``, a
:class:`~vitzoo.models.feature_hooks.FeatureHookNet`, with timm's defaults and meaning: the
last three blocks, ``(B, D, H / s, W / s)`` maps of the patch tokens, the blocks after the
last chosen one, the final norm and the head removed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

from ..errors import ConfigError, FeatureIndexError, UnsupportedOptionError
from .feature_hooks import FeatureHookNet
from .feature_info import FeatureInfo
from .vision_transformer import VisionTransformer, take_indices

__all__ = ["DEFAULT_OUT_INDICES", "FEATURE_CLASSES", "FeatureGetterNet", "build_features",
           "check_out_indices", "features_pretrained_cfg"]

logger = logging.getLogger(__name__)

DEFAULT_OUT_INDICES = 3
"""timm's default for ViTs: the last three blocks."""
FEATURE_CLASSES = ("getter", "hook")
OUTPUT_FORMATS = ("NCHW", "NLC")
# Keys timm drops from a backbone's pretrained cfg: they describe the removed head.
_HEAD_KEYS = ("num_classes", "classifier", "global_pool")


def check_out_indices(model: nn.Module, out_indices: int | Sequence[int]) -> list[int]:
    """The blocks ``out_indices`` names, sorted (timm's rule: an int n is the last n blocks,
    negative indices count from the end).

    Raises:
        FeatureIndexError: an index is out of range, or the int is not in 1..depth.
    """
    # a vitzoo model's list of dicts, one per block (nn.Module's stub says tensor or module)
    depth = len(cast(Sequence[Mapping[str, Any]], model.feature_info))
    if isinstance(out_indices, Sequence) and not isinstance(out_indices, str):
        out_indices = list(out_indices)
    try:
        chosen, _ = take_indices(depth, out_indices)
    except ConfigError as err:
        raise FeatureIndexError(f"out_indices={out_indices!r} does not fit a model with {depth} "
                                f"blocks: {err}") from err
    return chosen


def features_pretrained_cfg(pretrained_cfg: dict[str, Any]) -> dict[str, Any]:
    """A backbone's pretrained cfg: the model's, without the removed head's keys (timm's)."""
    return {k: v for k, v in pretrained_cfg.items() if k not in _HEAD_KEYS}


class FeatureGetterNet(nn.Module):
    """The feature maps of chosen blocks, through the model's ``forward_intermediates``.

    timm's class of the same name, with its arguments. The model is pruned first (with
    ``prune``): the blocks after the last chosen one, the head, pooling and ``fc_norm`` are
    removed, and the final norm too unless ``norm`` (so no parameter goes unused, as DDP
    requires). ``forward(x)`` returns
    ``model.forward_intermediates(x, indices, norm=norm, output_fmt=output_fmt,
    intermediates_only=True)``: one map per chosen block, in block order.

    Args:
        model: a vitzoo model (anything with ``forward_intermediates`` and ``feature_info``).
        out_indices: the blocks: an int n for the last n, or indices (negative from the end).
        out_map: must be None (timm has not implemented it either).
        return_dict: must be False (timm has not implemented it either).
        output_fmt: ``"NCHW"`` maps ``(B, D, gh, gw)`` or ``"NLC"`` tokens ``(B, N, D)``.
        norm: apply the final norm to every map.
        prune: remove what the chosen blocks do not need.

    Attributes:
        feature_info: a :class:`FeatureInfo` over all the model's blocks (pruned ones
            included, as timm's); ``out_indices`` are the chosen blocks, sorted (the order of
            the outputs).
        pretrained_cfg: the model's, without ``num_classes`` / ``classifier`` (timm's rule);
            ``default_cfg`` is the same dict.

    Raises:
        FeatureIndexError: ``out_indices`` does not fit the model's depth.
        ConfigError: an unknown ``output_fmt``.
    """

    __jit_unused_properties__ = ["default_cfg"]  # TorchScript skips the dict property

    def __init__(self, model: nn.Module, out_indices: int | Sequence[int] = 4,
                 out_map: Sequence[int | str] | None = None, return_dict: bool = False,
                 output_fmt: str = "NCHW", norm: bool = False, prune: bool = True) -> None:
        super().__init__()
        if out_map is not None or return_dict:
            raise UnsupportedOptionError("FeatureGetterNet returns a list in block order; "
                                         "out_map and return_dict are not supported (timm does "
                                         "not implement them either)")
        if output_fmt not in OUTPUT_FORMATS:
            raise ConfigError(f"output_fmt={output_fmt!r} is not one of "
                              f"{', '.join(map(repr, OUTPUT_FORMATS))}")
        chosen = check_out_indices(model, out_indices)
        # a vitzoo model: the methods used here are VisionTransformer's
        backbone = cast(VisionTransformer, model)
        every_block = [dict(entry) for entry in backbone.feature_info]  # as before pruning
        if prune and hasattr(model, "prune_intermediate_layers"):
            chosen = backbone.prune_intermediate_layers(chosen, prune_norm=not norm)
        self.model = backbone
        self.out_indices: list[int] = list(chosen)
        self.output_fmt = output_fmt
        self.norm = norm
        self.feature_info = FeatureInfo(every_block, self.out_indices)
        self.pretrained_cfg = features_pretrained_cfg(getattr(model, "pretrained_cfg", {}))
        self.in_chans = getattr(getattr(model, "cfg", None), "in_chans", 3)

    @property
    def default_cfg(self) -> dict[str, Any]:
        """``pretrained_cfg`` under timm's older name."""
        return self.pretrained_cfg

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the blocks' activations in the backward pass (the model's switch)."""
        self.model.set_grad_checkpointing(enable)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The chosen blocks' maps for images ``x`` ``(B, C, H, W)``, in block order."""
        maps: list[torch.Tensor] = self.model.forward_intermediates(
            x, indices=self.out_indices, norm=self.norm, output_fmt=self.output_fmt,
            intermediates_only=True)
        return maps


def _feature_class(feature_cls: str | type) -> type:
    if isinstance(feature_cls, type):
        return feature_cls
    name = str(feature_cls).lower()
    if name == "getter":
        return FeatureGetterNet
    if "hook" in name:  # timm matches any name with "hook" in it
        return FeatureHookNet
    if name in ("list", "dict"):
        raise UnsupportedOptionError(
            f"feature_cls={feature_cls!r} cannot reach a Vision Transformer's blocks (timm's "
            "cannot either): use 'getter' (the default) or 'hook'")
    if name == "fx":
        raise UnsupportedOptionError("feature_cls='fx' (timm's torch.fx graph extractor) is not "
                                     "implemented: use 'getter' (the default) or 'hook'")
    raise ConfigError(f"unknown feature_cls={feature_cls!r}: use one of "
                      f"{', '.join(map(repr, FEATURE_CLASSES))} or a class")


def build_features(model: nn.Module, *, out_indices: int | Sequence[int] = DEFAULT_OUT_INDICES,
                   feature_cls: str | type = "getter", output_fmt: str | None = None,
                   norm: bool | None = None) -> nn.Module:
    """Wrap ``model`` as ``create_model(..., features_only=True)`` does (timm's rules).

    Args:
        model: the built (and loaded) model.
        out_indices: the blocks (default: the last three).
        feature_cls: ``"getter"``, ``"hook"`` (any name containing it) or a class taking
            ``(model, out_indices=...)``.
        output_fmt: ``"NCHW"`` or ``"NLC"`` (getter only; vitzoo's addition to timm's
            ``create_model`` arguments). None: the class's default.
        norm: apply the final norm to each map (getter only; vitzoo's addition).

    Raises:
        FeatureIndexError: ``out_indices`` does not fit the model.
        ConfigError: an unknown ``feature_cls``; ``output_fmt`` / ``norm`` for the hook class.
        UnsupportedOptionError: ``feature_cls`` is timm's ``"list"``, ``"dict"`` or ``"fx"``.
    """
    cls = _feature_class(feature_cls)
    options: dict[str, Any] = {}
    if output_fmt is not None:
        options["output_fmt"] = output_fmt
    if norm is not None:
        options["norm"] = norm
    if options and issubclass(cls, FeatureHookNet):
        raise ConfigError(f"{' and '.join(f'{k}=' for k in options)} only apply to "
                          "feature_cls='getter': the hook class returns every block output as "
                          "it is, (B, P + N, D)")
    check_out_indices(model, out_indices)
    features = cls(model, out_indices=out_indices, **options)
    logger.debug("features_only: %s over blocks %s", cls.__name__,
                 list(features.feature_info.out_indices))
    return cast(nn.Module, features)  # a feature class builds a module
