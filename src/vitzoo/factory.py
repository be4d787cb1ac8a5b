"""``create_model`` and ``load_model``: models by name, and models from checkpoint files.

Both are thin: the registry says what a name is, :mod:`vitzoo.hub` where weights are,
:mod:`vitzoo.loading` fits and loads them, :mod:`vitzoo.pretrained` describes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from . import hub, io, registry
from ._utils import skip_init
from .config import ViTConfig, check_field_names
from .errors import (
    CheckpointError,
    ConfigError,
    UnsupportedOptionError,
    VitzooError,
    ZeroHeadWarning,
)
from .layers import RESAMPLE_MODES
from .loading import (
    CheckpointFacts,
    load_state,
    read_source,
    read_state_dict,
)
from .models import VisionTransformer
from .models.features import DEFAULT_OUT_INDICES, build_features
from .pretrained import (
    PretrainedCfg,
    build_pretrained_cfg,
    default_tag,
    get_entry,
    numerics_of,
    resolve_pretrained_cfg,
    tag_num_classes,
)

__all__ = ["CHECKPOINT_SUFFIXES", "create_model", "load_model", "looks_like_a_path", "open_model"]

CHECKPOINT_SUFFIXES = (".safetensors", ".npz", ".pth", ".pt", ".bin")
"""Suffixes that make a model argument a file name, never an architecture name."""


# Config fields for which None is a value, not "keep the default".
_NULLABLE = frozenset(f.name for f in dataclasses.fields(ViTConfig) if "None" in str(f.type))
_FEATURE_ARGS = ("out_indices", "feature_cls", "output_fmt", "norm")


def _sized(num_classes: int | None, img_size: Any, in_chans: int | None) -> dict[str, Any]:
    return {k: v for k, v in (("num_classes", num_classes), ("img_size", img_size),
                              ("in_chans", in_chans)) if v is not None}


def _without_none(overrides: dict[str, Any]) -> dict[str, Any]:
    """timm drops None-valued keyword arguments (unset command-line options); so does vitzoo,
    except for the config fields where None is a value (``representation_size=None`` ...)."""
    return {k: v for k, v in overrides.items() if v is not None or k in _NULLABLE}


def create_model(name: str, pretrained: bool = False, *, num_classes: int | None = None,
                 img_size: int | tuple[int, int] | None = None, in_chans: int | None = None,
                 checkpoint_path: str | Path | None = None,
                 pretrained_cfg: str | Mapping[str, Any] | PretrainedCfg | None = None,
                 pretrained_cfg_overlay: Mapping[str, Any] | None = None,
                 features_only: bool = False, out_indices: int | Sequence[int] | None = None,
                 feature_cls: str | type | None = None, output_fmt: str | None = None,
                 norm: bool | None = None, cache_dir: str | Path | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 scriptable: bool | None = None, exportable: bool | None = None,
                 no_jit: bool | None = None, **overrides: Any) -> nn.Module:
    """Build a model by architecture name, alias or ``arch.tag`` (timm's arguments work too).

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
        checkpoint_path: a state dict to load (strictly); the model is built without random
            initialisation of what it loads.
        pretrained_cfg: timm's: a tag (wins over the name's), or a whole pretrained cfg (a
            dict or :class:`~vitzoo.PretrainedCfg`) replacing the weight table's.
        pretrained_cfg_overlay: timm's: keys replacing those of the pretrained cfg; they end
            up in ``model.pretrained_cfg``. With ``pretrained``, ``file=PATH`` loads that local
            file (any format :func:`load_model` reads, or a state dict) instead of the tag's
            weights; ``num_classes`` / ``input_size`` there are the model's defaults.
        features_only: return a backbone (:class:`~vitzoo.models.FeatureGetterNet`) whose
            forward gives the maps of ``out_indices``, pruned of what they do not need.
        out_indices: its blocks: an int n for the last n (default 3), or indices.
        feature_cls: ``"getter"`` (default) or ``"hook"`` (raw block outputs).
        output_fmt: the getter's map layout, ``"NCHW"`` or ``"NLC"`` (vitzoo's addition).
        norm: whether the getter applies the final norm to its maps (vitzoo's addition).
        cache_dir: keep downloads in this directory instead of the usual caches (timm's).
        device: where the returned model's tensors are.
        dtype: the floating type of the returned model's tensors.
        scriptable: timm's; like ``exportable`` and ``no_jit``, it changes nothing
            (vitzoo's layers always script and export).
        **overrides: any :class:`vitzoo.ViTConfig` field, e.g. ``drop_path_rate=0.1``, or
            ``dynamic_img_size=True``; None values are ignored, as timm ignores them.

    Raises:
        UnknownModelError: the name is not registered (close matches are listed).
        UnknownTagError: the tag is not known for the architecture.
        UnknownOverrideError: an override or a pretrained-cfg key is unknown (valid names
            are listed).
        FeatureIndexError: ``out_indices`` does not fit the model.
        OfflineError: ``pretrained`` weights are not cached and the network is off.
    """
    overrides = _without_none(overrides)
    check_field_names(overrides)
    name = os.fspath(name) if isinstance(name, os.PathLike) else name
    device = _check_arguments(name, device, dtype, checkpoint_path=checkpoint_path,
                              cache_dir=cache_dir, pretrained_cfg_overlay=pretrained_cfg_overlay,
                              norm=norm)
    given = [k for k, v in zip(_FEATURE_ARGS, (out_indices, feature_cls, output_fmt, norm),
                               strict=True) if v is not None]
    if given and not features_only:
        raise ConfigError(f"{', '.join(given)} only apply with features_only=True")
    # built on the device (a meta-device model allocates nothing), then moved there for what
    # loading put elsewhere
    placement = torch.device(device) if device is not None else contextlib.nullcontext()
    with hub.use_cache_dir(cache_dir), placement:
        model = _create(name, pretrained, _sized(num_classes, img_size, in_chans),
                        checkpoint_path, pretrained_cfg, pretrained_cfg_overlay, overrides)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    if features_only:
        return build_features(model, out_indices=DEFAULT_OUT_INDICES if out_indices is None
                              else out_indices, feature_cls=feature_cls or "getter",
                              output_fmt=output_fmt, norm=norm)
    return model


def _check_device(device: torch.device | str | int | None) -> torch.device | None:
    if device is None:
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ConfigError(f"device={device!r} is not a device: use e.g. 'cpu', 'cuda', "
                          f"'cuda:1' or 'meta' ({err})") from err
    backend = getattr(torch, parsed.type, None) if parsed.type in ("cuda", "xpu", "mps") else None
    if backend is not None:
        count = backend.device_count() if backend.is_available() else 0
        if count == 0 or (parsed.index is not None and parsed.index >= count):
            raise ConfigError(f"device={device!r}: this machine has {count} {parsed.type} "
                              "device(s); use 'cpu' or another device")
    return parsed


def _check_arguments(name: object, device: torch.device | str | None,
                     dtype: torch.dtype | None, **paths_and_options: Any) -> torch.device | None:
    """``create_model``'s own arguments of the right kind; the device parsed (and present)."""
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        raise ConfigError(f"the model name must be a non-empty string, got {name!r}")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ConfigError(f"dtype={dtype!r} is not a floating-point torch.dtype: use e.g. "
                          "torch.float32, torch.bfloat16 or torch.float16")
    for key in ("checkpoint_path", "cache_dir"):
        value = paths_and_options[key]
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f"{key} must be a path (str or os.PathLike), got {value!r}")
    overlay = paths_and_options["pretrained_cfg_overlay"]
    if overlay is not None and not isinstance(overlay, Mapping):
        raise ConfigError(f"pretrained_cfg_overlay must be a dict, got {overlay!r}")
    norm = paths_and_options["norm"]
    if norm is not None and not isinstance(norm, bool):
        raise ConfigError(f"norm must be True, False or None, got {norm!r}")
    return _check_device(device)


def _described(pretrained_cfg: Any, overlay: Mapping[str, Any] | None,
               resolved: PretrainedCfg) -> dict[str, Any]:
    """The model defaults a pretrained cfg or overlay names: its classes and input size
    (timm builds the model for them)."""
    keys = set(overlay or {})
    if isinstance(pretrained_cfg, PretrainedCfg):
        keys |= {"num_classes", "input_size"}
    elif isinstance(pretrained_cfg, Mapping):
        keys |= set(pretrained_cfg)
    described: dict[str, Any] = {}
    if "num_classes" in keys:
        described["num_classes"] = resolved.num_classes
    if "input_size" in keys:
        described["in_chans"] = resolved.input_size[0]
        described["img_size"] = tuple(resolved.input_size[1:])
    return described


def _resolved_cfg(arch: str, tag: str | None, pretrained_cfg: Any,
                  overlay: Mapping[str, Any] | None) -> PretrainedCfg:
    try:
        return resolve_pretrained_cfg(
            registry.default_config(arch), arch=arch, tag=tag or default_tag(arch),
            entry=get_entry(arch, tag), pretrained_cfg=pretrained_cfg, overlay=overlay)
    except VitzooError:
        raise
    except ValueError as err:  # a value of the wrong kind
        raise ConfigError(f"pretrained_cfg / pretrained_cfg_overlay: {err}") from err


def _create(name: str, pretrained: bool, sized: dict[str, Any],
            checkpoint_path: str | Path | None, pretrained_cfg: Any,
            overlay: Mapping[str, Any] | None, overrides: dict[str, Any]) -> VisionTransformer:
    if isinstance(name, str) and (name.startswith(hub.HF_HUB_PREFIX) or Path(name).is_dir()):
        if pretrained_cfg is not None or overlay:
            raise ConfigError(f"{name} describes its own weights: pretrained_cfg and "
                              "pretrained_cfg_overlay apply to registered names only")
        path = hub.hub_repo_dir(name) if name.startswith(hub.HF_HUB_PREFIX) else name
        return load_model(path, **overrides, **sized)
    arch, tag = registry.resolve_name(name)
    if isinstance(pretrained_cfg, str):  # a tag, which wins over the name's (timm's rule)
        arch, tag = registry.resolve_name(f"{arch}.{pretrained_cfg}")
        pretrained_cfg = None
    resolved = None
    if pretrained_cfg is not None or overlay:
        resolved = _resolved_cfg(arch, tag, pretrained_cfg, overlay)
        sized = {**_described(pretrained_cfg, overlay, resolved), **sized}
    if pretrained:
        if resolved is not None and resolved.file:
            model = _pretrained_file(arch, resolved, {**overrides, **sized}, overlay or {})
        else:
            model = _pretrained(arch, tag, {**overrides, **sized}, resolved)
        if checkpoint_path is not None:
            state, fmt, unmatched = read_state_dict(checkpoint_path)
            load_state(state, model=model, name=str(checkpoint_path), source_format=fmt,
                       unmatched=unmatched)
        return model
    tag = tag or default_tag(arch)
    kwargs = dict(overrides, **sized)
    if "num_classes" not in kwargs:
        default = resolved.num_classes if resolved is not None else tag_num_classes(arch, tag)
        if default is not None:
            kwargs["num_classes"] = default
    if checkpoint_path is None:
        model = registry.build(arch, **kwargs)
    else:
        model = _from_state_dict(arch, kwargs, checkpoint_path)
    model.pretrained_cfg = build_pretrained_cfg(
        model.cfg, arch=arch, tag=tag, entry=get_entry(arch, tag) if resolved is None else None,
        stored=resolved,
        file=None if checkpoint_path is None else str(checkpoint_path)).to_dict()
    return model


def _from_state_dict(arch: str, kwargs: dict[str, Any],
                     checkpoint_path: str | Path) -> VisionTransformer:
    """The architecture built around a state dict, never initialising what it loads."""
    state, fmt, unmatched = read_state_dict(checkpoint_path)
    arch_info = registry.get_arch(arch)
    if arch_info is None:  # a user builder function may do more than its config says
        with skip_init():
            built = registry.build(arch, **kwargs)
        model, _ = load_state(state, model=built, name=str(checkpoint_path), source_format=fmt,
                              unmatched=unmatched)
        return cast(VisionTransformer, model)  # load_state loaded and returned built
    model, _ = load_state(state, cfg=arch_info.cfg.replace(**kwargs), name=str(checkpoint_path),
                          source_format=fmt, unmatched=unmatched, model_cls=arch_info.model_cls)
    # built as the architecture's class, a VisionTransformer
    return cast(VisionTransformer, model).train()  # as create_model's other models


def _pretrained(arch: str, tag: str | None, overrides: dict[str, Any],
                resolved: PretrainedCfg | None = None) -> VisionTransformer:
    entry = get_entry(arch, tag)
    if entry is None:
        raise VitzooError(f"{arch} has no pretrained weights; build it with pretrained=False")
    if resolved is not None and (resolved.url, resolved.hf_hub_id) != (entry.url,
                                                                       entry.hf_hub_id):
        raise UnsupportedOptionError(
            f"vitzoo loads other weights than {entry.name}'s from a local file only: download "
            "them and pass pretrained_cfg_overlay=dict(file=PATH)")
    path = hub.resolve_weights(entry)
    tensors, metadata = io.read_safetensors(path)
    state, fmt, unmatched = read_state_dict(tensors)
    if unmatched:
        raise CheckpointError(f"{path} has arrays with no vitzoo place: "
                              + ", ".join(unmatched[:8]))
    target = registry.default_config(arch).replace(
        num_classes=entry.num_classes, img_size=entry.img_size, **entry.numerics,
        # a new head starts at zero for Google's weights, as Google fine-tunes
        **({"weight_init": "jax"} if entry.origin == "jax" else {}))
    native = target
    if "vitzoo_config" in metadata:  # a Google .npz converted into the cache
        native = ViTConfig.from_dict(io.parse_vitzoo_metadata(metadata, str(path))[0])
    cfg = target.replace(**overrides)
    loaded, _ = load_state(state, cfg=cfg, native=native, resample=native.pos_embed_resample,
                           name=entry.name, source_format=fmt)
    model = cast(VisionTransformer, loaded)  # built from cfg
    model.pretrained_cfg = build_pretrained_cfg(
        cfg, arch=arch, entry=entry if resolved is None else None, stored=resolved,
        file=str(path)).to_dict()
    return model


def _read_weights_file(arch: str, path: Path, resolved: PretrainedCfg, origin: str | None,
                       overrides: dict[str, Any],
                       ) -> tuple[dict[str, torch.Tensor], ViTConfig, str, str]:
    """A weights file of ``arch`` as ``(state, native config, origin, layout)``: a
    self-describing file says what it was saved for; a plain state dict (PyTorch-trained
    unless ``origin`` says otherwise) is taken for ``arch`` as ``overrides`` shape it, with
    the head and position grid its tensors have."""
    fmt = io.detect_format(path)
    if fmt in ("jax_npz", "vitzoo", "hub_dir"):
        source = read_source(path, source_format=fmt)
        return source.state, source.native, origin or source.origin, source.source_format or fmt
    state, layout, unmatched = read_state_dict(path)
    if unmatched:
        raise CheckpointError(f"{path} ({layout} layout) has arrays with no vitzoo place: "
                              + ", ".join(unmatched[:8]))
    origin = origin or "pytorch"
    facts = CheckpointFacts.of(state)
    shape = {k: v for k, v in overrides.items() if k not in ("num_classes", "img_size",
                                                             "in_chans")}
    native = registry.default_config(arch).replace(**numerics_of(origin)).replace(
        **shape, num_classes=facts.num_classes, in_chans=resolved.input_size[0],
        img_size=tuple(resolved.input_size[1:]))
    pre_logits = state.get("pre_logits.fc.weight")
    if pre_logits is not None and pre_logits.dim() == 2:
        native = native.replace(representation_size=int(pre_logits.shape[0]))
    side = math.isqrt(facts.grid_tokens or 0)
    if (native.backbone_layers is None and facts.grid_tokens and side * side == facts.grid_tokens
            and facts.grid_tokens != native.num_patches):  # saved at another (square) size
        native = native.replace(img_size=(side * native.patch_size[0],
                                          side * native.patch_size[1]))
    return state, native, origin, layout


def _pretrained_file(arch: str, resolved: PretrainedCfg, overrides: dict[str, Any],
                     overlay: Mapping[str, Any]) -> VisionTransformer:
    """``pretrained=True`` with ``pretrained_cfg_overlay=dict(file=...)``: the file's weights,
    fitted to the model as the tag's would be (head, position grid, input channels)."""
    assert resolved.file is not None  # the caller's condition for coming here
    path = Path(resolved.file)
    state, native, origin, layout = _read_weights_file(arch, path, resolved,
                                                       overlay.get("origin"), overrides)
    target = native.replace(**({"weight_init": "jax"} if origin == "jax" else {}))
    cfg = target.replace(**overrides)
    loaded, _ = load_state(state, cfg=cfg, native=native, resample=native.pos_embed_resample,
                           name=str(path), source_format=layout)
    model = cast(VisionTransformer, loaded)  # built from cfg
    model.pretrained_cfg = build_pretrained_cfg(cfg, arch=arch, stored=resolved,
                                                origin=origin).to_dict()
    return model


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
            layout (``"timm"``, ``"dinov2"``, ``"deit3"``, ``"open_clip"``,
            ``"hf_transformers"``, ``"torchvision"``, ``"vit_pytorch"``).
        resample: how to resize position embeddings for another ``img_size``: ``"scipy"``
            (Google's ``ndimage.zoom(order=1)``), ``"bilinear"``, ``"bicubic"``, ``"dinov2"``
            (DINOv2's offset-0.1 scale factors) or ``"dinov2_reg"``; default: the file's own
            rule (Google's for JAX weights, DINOv2's for DINOv2, bicubic otherwise).
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
    native = source.native
    # the file's own rule: Google's zoom for JAX weights, DINOv2's for DINOv2, else bicubic
    resample = resample or native.pos_embed_resample
    # the run-time rule (dynamic_img_size, set_input_size) is the load-time one
    cfg = native.replace(**{"pos_embed_resample": resample, **overrides})
    loaded, _ = load_state(source.state, cfg=cfg, native=native, resample=resample,
                           antialias=antialias, name=str(path),
                           source_format=source.source_format)
    model = cast(VisionTransformer, loaded)  # built from cfg
    if source.zero_head and cfg.num_classes == native.num_classes:
        warnings.warn(
            f"the classifier in {path} is all zeros (Google zeroed the heads of some "
            "ImageNet-21k releases), so its logits carry no information: pass num_classes=0 "
            "for features, or num_classes=N to fine-tune a new head",
            ZeroHeadWarning, stacklevel=2)
    try:
        model.pretrained_cfg = build_pretrained_cfg(
            cfg, stored=source.pretrained_cfg, source=str(path), origin=source.origin).to_dict()
    except ValueError as err:
        raise CheckpointError(f"{path}: its pretrained_cfg is invalid: {err}") from err
    return model


def looks_like_a_path(name: str) -> bool:
    """Whether ``name`` is meant as a file: a checkpoint suffix or a path separator (an
    ``hf-hub:org/name`` is a name)."""
    if name.startswith(hub.HF_HUB_PREFIX):
        return False
    separators = [sep for sep in (os.sep, os.altsep) if sep]
    return Path(name).suffix.lower() in CHECKPOINT_SUFFIXES or any(s in name for s in separators)


def open_model(name: str, *, pretrained: bool = True, **overrides: Any) -> VisionTransformer:
    """A model from a checkpoint file or directory (:func:`load_model`), or from a registered
    name (:func:`create_model`, with its pretrained weights by default): what the command line
    and ``finetune_on`` take as a model.

    Raises:
        CheckpointError: ``name`` looks like a path (a checkpoint suffix or a separator) and
            does not exist.
    """
    if Path(name).exists():
        return load_model(name, **overrides)
    if looks_like_a_path(name):
        raise CheckpointError(f"no checkpoint file {name}: check the path (a model name has "
                              "no file suffix or '/', e.g. vit_base_patch16_224.augreg_in21k)")
    # a VisionTransformer: open_model's callers never ask for features_only
    return cast(VisionTransformer, create_model(name, pretrained=pretrained, **overrides))
