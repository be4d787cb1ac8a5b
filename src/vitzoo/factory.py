"""``create_model``: build a registered architecture by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import check_field_names
from .errors import VitzooError
from .io import load_checkpoint
from .models.vision_transformer import VisionTransformer
from .pretrained import default_tag, pretrained_cfg, tag_num_classes
from .registry import get_builder, resolve_name

__all__ = ["create_model"]


def create_model(name: str, *, pretrained: bool = False, num_classes: int | None = None,
                 img_size: int | tuple[int, int] | None = None, in_chans: int | None = None,
                 checkpoint_path: str | Path | None = None,
                 **overrides: Any) -> VisionTransformer:
    """Build a model by architecture name, alias or ``arch.tag``.

    Args:
        name: e.g. ``"vit_base_patch16_224"``, ``"vit_b16"``, ``"ViT-B_16"`` or
            ``"vit_base_patch16_224.augreg_in21k"``.
        pretrained: load the tag's pretrained weights (not available in this release: use
            ``checkpoint_path``).
        num_classes: classes of the head; 0 removes it. Default: the classes of the tag's
            weights (of the default tag when none is given), else 1000.
        img_size: input size (int or pair); position embeddings are sized to the new grid.
        in_chans: input channels.
        checkpoint_path: a vitzoo/timm-layout state dict to load (strictly).
        **overrides: any :class:`vitzoo.ViTConfig` field, e.g. ``drop_path_rate=0.1``,
            ``global_pool="avg"``, ``gelu_approximate="tanh"``.

    Raises:
        UnknownModelError: the name is not registered (close matches are listed).
        UnknownTagError: the tag is not known for the architecture.
        UnknownOverrideError: an override is not a config field (valid names are listed).
    """
    arch, tag = resolve_name(name)
    check_field_names(overrides)
    if pretrained:
        raise VitzooError(
            f"pretrained=True is not available in this release of vitzoo for {name!r}: "
            "weight downloads are not implemented yet. Load a local state dict with "
            "checkpoint_path=... instead."
        )
    tag = tag or default_tag(arch)
    kwargs = dict(overrides)
    if num_classes is None:
        num_classes = tag_num_classes(arch, tag)
    for key, value in (("num_classes", num_classes), ("img_size", img_size),
                       ("in_chans", in_chans)):
        if value is not None:
            kwargs[key] = value
    model = get_builder(arch)(**kwargs)
    model.pretrained_cfg = pretrained_cfg(arch, tag, img_size=model.cfg.img_size,
                                          in_chans=model.cfg.in_chans,
                                          num_classes=model.cfg.num_classes)
    if checkpoint_path is not None:
        load_checkpoint(model, checkpoint_path, strict=True)
    return model
