"""``create_model``: build a registered architecture by name."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from .checkpoints import fit_state, read_source
from .config import ViTConfig, check_field_names
from .errors import VitzooError
from .io import LoadReport, load_checkpoint
from .layers.pos_embed import RESAMPLE_MODES
from .models import build_model
from .models.vision_transformer import VisionTransformer
from .pretrained import default_tag, pretrained_cfg, tag_num_classes
from .registry import get_builder, resolve_name

__all__ = ["create_model", "load_model"]

logger = logging.getLogger(__name__)


class ZeroHeadWarning(UserWarning):
    """A checkpoint's classifier is all zeros, so its logits carry no information."""


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


def load_model(path: str | Path, *, source_format: str = "auto", resample: str | None = None,
               antialias: bool = False, **overrides: Any) -> VisionTransformer:
    """Build and load a model from a self-describing checkpoint, without naming the architecture.

    Accepts a Google ``.npz`` (published, Linen or big_vision layout; the architecture is read
    off the array shapes and runs with JAX's numerics: tanh GELU, LayerNorm eps 1e-6), a vitzoo
    ``.safetensors`` (config in the metadata) or a hub-layout directory.

    Args:
        path: the checkpoint.
        source_format: ``"auto"``, ``"jax_npz"``, ``"vitzoo"`` or ``"hub_dir"``.
        resample: how to resize position embeddings for another ``img_size``: ``"scipy"``
            (Google's ``ndimage.zoom(order=1)``; the default for JAX-origin weights),
            ``"bilinear"`` or ``"bicubic"`` (the default otherwise).
        antialias: antialias bilinear/bicubic resampling when the grid shrinks.
        **overrides: ViTConfig fields applied on top of the file's: ``num_classes`` (a
            different count replaces the head with a zero-initialised one for JAX weights),
            ``img_size`` (position embeddings resampled; required for sin-cos files),
            drop rates, ``attn_impl`` ...

    Returns:
        The model in eval mode; ``model.load_report`` says what was dropped or resampled.

    Raises:
        CheckpointError: unreadable, corrupt or unsupported file.
        UnknownOverrideError: an override is not a config field.
    """
    check_field_names(overrides)
    if resample is not None and resample not in RESAMPLE_MODES:
        raise VitzooError(f"resample={resample!r} is not one of {', '.join(RESAMPLE_MODES)}")
    img_size = overrides.get("img_size")
    if isinstance(img_size, int):
        img_size = (img_size, img_size)
    source = read_source(path, source_format=source_format, img_size=img_size)
    native = ViTConfig.from_dict(source.config)
    cfg = native.replace(**overrides)
    model = build_model(cfg)
    report = LoadReport()
    mode = resample or ("scipy" if source.origin == "jax" else "bicubic")
    state = fit_state(source.state, native, cfg, own_state=model.state_dict(), resample=mode,
                      antialias=antialias, report=report)
    loaded = load_checkpoint(model, state, strict=True)
    report.missing, report.unexpected = loaded.missing, loaded.unexpected
    if report.dropped or report.resampled:
        logger.info("loaded %s: %s", path, report.describe())
    if source.zero_head and cfg.num_classes == native.num_classes:
        warnings.warn(
            f"the classifier in {path} is all zeros (Google zeroed the heads of some "
            "ImageNet-21k releases), so its logits carry no information: pass num_classes=0 "
            "for features, or num_classes=N to fine-tune a new head",
            ZeroHeadWarning, stacklevel=2)
    model.pretrained_cfg = {
        **source.pretrained_cfg,
        "input_size": (cfg.in_chans, *cfg.img_size),
        "num_classes": cfg.num_classes,
        "source": str(path),
    }
    model.load_report = report
    return model.eval()
