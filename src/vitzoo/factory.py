"""``create_model`` and ``load_model``: models by name, and models from checkpoint files."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ._utils import skip_init
from .checkpoints import Source, fit_state, read_source
from .config import ViTConfig, check_field_names
from .errors import VitzooError, ZeroHeadWarning
from .io import LoadReport, _adapt_input_channels, compare_state_dict, load_checkpoint
from .layers.pos_embed import RESAMPLE_MODES
from .models import build_model
from .models.vision_transformer import VisionTransformer
from .pretrained import default_tag, get_entry, pretrained_cfg, tag_num_classes
from .registry import default_config, get_builder, resolve_name

__all__ = ["ZeroHeadWarning", "create_model", "load_model"]

logger = logging.getLogger(__name__)

HF_HUB_PREFIX = "hf-hub:"



def _loaded_model(state: Mapping[str, torch.Tensor], native: ViTConfig, cfg: ViTConfig, *,
                  resample: str, antialias: bool, name: str) -> VisionTransformer:
    """A model built for ``cfg`` holding ``state`` (saved for ``native``), with no random
    initialisation of what is loaded; heads and other new parts are initialised as ``cfg``
    says. ``model.load_report`` records what was adapted."""
    report = LoadReport()
    state, fresh = fit_state(state, native, cfg, resample=resample, antialias=antialias,
                             report=report)
    with skip_init():
        model = build_model(cfg)
    _adapt_input_channels(state, model.state_dict(), report)
    diff = compare_state_dict(model, state)
    missing = [k for k in diff.missing if k.split(".")[0] not in fresh]
    if missing or diff.unexpected or diff.mismatched:
        from .diagnose import explain_mismatch
        from .io import CheckpointMismatchError

        diff.missing = missing
        reasons = "".join(f"\n- {line}" for line in explain_mismatch(state, model))
        raise CheckpointMismatchError(f"{name} does not fit the model it describes:{reasons}\n"
                                      f"{diff.describe()}")
    model.load_state_dict(state, strict=False, assign=True)
    if fresh:
        model.init_weights(only=fresh)
    report.missing = []
    model.load_report = report
    if report.dropped or report.resampled or report.reshaped:
        logger.info("loaded %s: %s", name, report.describe())
    return model.eval()


def create_model(name: str, *, pretrained: bool = False, num_classes: int | None = None,
                 img_size: int | tuple[int, int] | None = None, in_chans: int | None = None,
                 checkpoint_path: str | Path | None = None,
                 **overrides: Any) -> VisionTransformer:
    """Build a model by architecture name, alias or ``arch.tag``.

    Args:
        name: e.g. ``"vit_base_patch16_224"``, ``"vit_b16"``, ``"ViT-B_16"``,
            ``"vit_base_patch16_224.augreg_in21k"``; also ``"hf-hub:org/repo[@revision]"`` or a
            local directory (``config.json`` + weights), loaded with :func:`load_model`.
        pretrained: load the tag's weights (the default tag's when none is named), from a local
            copy or the cache when there is one, else from the Hugging Face Hub or the original
            URL. The model computes with the numerics of the weights' origin (tanh GELU for
            Google's JAX weights) and ``model.pretrained_cfg`` holds their preprocessing.
        num_classes: classes of the head; 0 removes it. Default: the classes of the tag's
            weights (of the default tag when none is given), else 1000. With ``pretrained``,
            another count replaces the head (zero-initialised for JAX weights).
        img_size: input size (int or pair); with ``pretrained`` the position embeddings are
            resampled with the weights' own convention (scipy zoom for JAX weights).
        in_chans: input channels; 3-channel weights are adapted.
        checkpoint_path: a state dict to load (strictly) after building.
        **overrides: any :class:`vitzoo.ViTConfig` field, e.g. ``drop_path_rate=0.1``.

    Raises:
        UnknownModelError: the name is not registered (close matches are listed).
        UnknownTagError: the tag is not known for the architecture.
        UnknownOverrideError: an override is not a config field (valid names are listed).
        OfflineError: ``pretrained`` weights are not cached and the network is off.
    """
    check_field_names(overrides)
    sized = {k: v for k, v in (("num_classes", num_classes), ("img_size", img_size),
                               ("in_chans", in_chans)) if v is not None}
    if isinstance(name, str) and (name.startswith(HF_HUB_PREFIX) or Path(name).is_dir()):
        return load_model(_hub_repo(name) if name.startswith(HF_HUB_PREFIX) else name,
                          **overrides, **sized)
    arch, tag = resolve_name(name)
    if pretrained:
        model = _pretrained(arch, tag, {**overrides, **sized})
    else:
        tag = tag or default_tag(arch)
        kwargs = dict(overrides, **sized)
        if num_classes is None and tag_num_classes(arch, tag) is not None:
            kwargs["num_classes"] = tag_num_classes(arch, tag)
        model = get_builder(arch)(**kwargs)
        model.pretrained_cfg = pretrained_cfg(arch, tag, img_size=model.cfg.img_size,
                                              in_chans=model.cfg.in_chans,
                                              num_classes=model.cfg.num_classes)
    if checkpoint_path is not None:
        load_checkpoint(model, checkpoint_path, strict=True)
    return model


def _pretrained(arch: str, tag: str | None, overrides: dict[str, Any]) -> VisionTransformer:
    from .adapters import convert_state_dict
    from .hub import resolve_weights
    from .io import read_model_file

    entry = get_entry(arch, tag)
    if entry is None:
        raise VitzooError(f"{arch} has no pretrained weights; build it with pretrained=False")
    path = resolve_weights(entry)
    tensors, metadata = read_model_file(path)
    state, _, unmatched = convert_state_dict(tensors)
    if unmatched:
        raise VitzooError(f"{path} has arrays with no vitzoo place: {', '.join(unmatched[:8])}")
    jax = entry.origin == "jax"
    base = default_config(arch)
    cfg_fields: dict[str, Any] = {"num_classes": entry.num_classes,
                                  "img_size": entry.img_size, **entry.numerics}
    if jax:
        cfg_fields["weight_init"] = "jax"  # a new head starts at zero, as Google fine-tunes
    target = base.replace(**cfg_fields)
    native = (ViTConfig.from_dict(_json(metadata["vitzoo_config"]))
              if "vitzoo_config" in metadata else target)
    cfg = target.replace(**overrides)
    model = _loaded_model(state, native, cfg, resample="scipy" if jax else "bicubic",
                          antialias=False, name=entry.name)
    model.pretrained_cfg = {**pretrained_cfg(arch, entry.tag, img_size=cfg.img_size,
                                             in_chans=cfg.in_chans,
                                             num_classes=cfg.num_classes),
                            "file": str(path)}
    return model


def _json(text: str) -> dict[str, Any]:
    import json

    return json.loads(text)


def _hub_repo(name: str) -> Path:
    """Download ``hf-hub:org/repo[@revision]``'s ``config.json`` and weights (or find them in
    the cache); returns the local directory."""
    from huggingface_hub import snapshot_download

    from .hub import OfflineError, is_offline

    repo, _, revision = name[len(HF_HUB_PREFIX):].partition("@")
    patterns = ["config.json", "model.safetensors", "preprocessor_config.json"]
    from .hub import hf_cache_dir

    try:
        return Path(snapshot_download(repo, revision=revision or None, allow_patterns=patterns,
                                      cache_dir=hf_cache_dir(), local_files_only=is_offline()))
    except Exception as err:  # noqa: BLE001 - huggingface_hub raises many kinds
        if is_offline():
            raise OfflineError(f"{repo} is not in the Hugging Face cache and the network is "
                               f"off (HF_HUB_OFFLINE): {err}") from err
        raise VitzooError(f"cannot fetch {repo} from the Hugging Face Hub: {err}") from err


def load_model(path: str | Path, *, source_format: str = "auto", resample: str | None = None,
               antialias: bool = False, **overrides: Any) -> VisionTransformer:
    """Build and load a model from a self-describing checkpoint, without naming the architecture.

    Accepts a Google ``.npz`` (published, Linen or big_vision layout; the architecture is read
    off the array shapes and runs with JAX's numerics: tanh GELU, LayerNorm eps 1e-6), a vitzoo
    ``.safetensors`` (config in the metadata), a hub-layout directory (vitzoo, timm or
    Hugging Face transformers) or a plain state dict of a registered architecture.

    Args:
        path: the checkpoint.
        source_format: ``"auto"``, ``"jax_npz"``, ``"vitzoo"``, ``"hub_dir"`` or a state-dict
            layout (``"timm"``, ``"hf_transformers"``, ``"torchvision"``, ``"vit_pytorch"``).
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
    source: Source = read_source(path, source_format=source_format, img_size=img_size)
    native = ViTConfig.from_dict(source.config)
    cfg = native.replace(**overrides)
    mode = resample or ("scipy" if source.origin == "jax" else "bicubic")
    model = _loaded_model(source.state, native, cfg, resample=mode, antialias=antialias,
                          name=str(path))
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
    return model
