"""A model's data config and the transform pipeline built from it, with timm's signatures.

``create_transform(**resolve_data_config(model=model))`` (timm's idiom) and vitzoo's
``create_transform(resolve_data_config(model), train=False)`` build the same pipeline of
:mod:`vitzoo.data.transforms`: for a PIL image, timm's evaluation transform to the pixel
(Pillow resize, centre crop, normalise), without torchvision.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._utils import suggestion
from ..errors import ConfigError, UnknownOverrideError, UnsupportedOptionError
from ..pretrained import IMAGENET_MEAN, IMAGENET_STD, PretrainedCfg
from .transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    EnsureChannels,
    Normalize,
    RandomApply,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomVerticalFlip,
    Resize,
    ToTensor,
    check_interpolation,
)

__all__ = ["CROP_MODES", "DATA_CONFIG_KEYS", "DEFAULT_DATA_CONFIG", "TIMM_NOOP_OPTIONS",
           "create_transform", "resolve_data_config", "resolve_model_data_config"]

logger = logging.getLogger(__name__)

DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
"""The keys of a data config, in timm's order."""
CROP_MODES = ("center", "squash")
# The defaults of model.pretrained_cfg's schema: timm's for ViTs (mean = std = 0.5, crop 0.9).
DEFAULT_DATA_CONFIG: dict[str, Any] = {k: getattr(PretrainedCfg(), k) for k in DATA_CONFIG_KEYS}
_EVAL_RESIZES = ("crop", "resize")

TIMM_NOOP_OPTIONS: dict[str, Callable[[Any], bool]] = {
    "train_crop_mode": lambda v: v in (None, "rrc"),
    "gaussian_blur_prob": lambda v: not v,
    "auto_augment": lambda v: not v,
    "re_prob": lambda v: not v,
    "re_mode": lambda v: True,
    "re_count": lambda v: True,
    "re_num_splits": lambda v: True,
    "crop_border_pixels": lambda v: not v,
    "tf_preprocessing": lambda v: not v,
    "use_prefetcher": lambda v: not v,
    "normalize": lambda v: bool(v),
    "separate": lambda v: not v,
    "naflex": lambda v: not v,
    "patch_size": lambda v: True,
    "max_seq_len": lambda v: True,
    "patchify": lambda v: not v,
    "patchify_channels_last": lambda v: True,
    "patchify_flatten": lambda v: True,
}
"""timm ``create_transform`` options vitzoo accepts only at values that leave the pipeline
as it is (AutoAugment, random erasing, blur, TF preprocessing, prefetcher tensors, NaFlex are
not implemented): option -> whether a value is such a value."""


def _fit_channels(stats: Sequence[float], channels: int, name: str) -> tuple[float, ...]:
    stats = tuple(float(s) for s in stats)
    if len(stats) == channels:
        return stats
    if len(stats) == 1:
        return stats * channels
    if channels == 1:
        return (sum(stats) / len(stats),)
    raise ConfigError(f"{name} has {len(stats)} values but the input has {channels} channels; "
                      f"pass {name}= with {channels} values")


def _from_args(args: Mapping[str, Any], config: dict[str, Any]) -> None:
    """timm's reading of command-line arguments (unset ones are None or empty; other keys of
    ``args`` are ignored, as ``vars(argparse_namespace)`` has many)."""
    in_chans = args.get("in_chans") if args.get("in_chans") is not None else args.get("chans")
    if args.get("input_size") is not None:
        config["input_size"] = tuple(args["input_size"])
    elif args.get("img_size") is not None:
        size = args["img_size"]
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        config["input_size"] = (in_chans or config["input_size"][0], h, w)
    elif in_chans is not None:
        config["input_size"] = (in_chans, *config["input_size"][1:])
    for key in ("interpolation", "crop_pct", "crop_mode"):
        if args.get(key):
            config[key] = args[key]
    for key in ("mean", "std"):
        if args.get(key) is not None:
            config[key] = tuple(args[key])


def resolve_data_config(args: Mapping[str, Any] | Any = None,
                        pretrained_cfg: Mapping[str, Any] | None = None, model: Any = None,
                        use_test_size: bool = False, verbose: bool = False,
                        **overrides: Any) -> dict[str, Any]:
    """The preprocessing a model expects, as a dict for :func:`create_transform`.

    timm's signature and precedence: timm's ``args`` (a dict of command-line values; an
    argparse namespace works too) over ``pretrained_cfg`` over ``model.pretrained_cfg`` over
    the defaults (input (3, 224, 224), mean = std = 0.5, crop_pct 0.9, bicubic, centre crop).
    vitzoo's form ``resolve_data_config(model, **overrides)`` works too: a model as the first
    argument, and ``overrides`` (data-config keys) on top of everything. A vitzoo model's own
    input size (``model.cfg``) wins over its weights' record. Mean and std are averaged or
    repeated to the input's channel count.

    Args:
        args: timm's argument dict (``input_size``, ``img_size``, ``in_chans``,
            ``interpolation``, ``mean``, ``std``, ``crop_pct``, ``crop_mode``; other keys are
            ignored), or a model.
        pretrained_cfg: a pretrained cfg to read instead of the model's.
        model: the model (its ``pretrained_cfg`` and ``cfg``).
        use_test_size: take ``test_input_size`` / ``test_crop_pct`` when the cfg has them.
        verbose: log the result.
        **overrides: data-config keys, applied last.

    Returns:
        A dict with timm's keys ``input_size``, ``interpolation``, ``mean``, ``std``,
        ``crop_pct``, ``crop_mode``.

    Raises:
        UnknownOverrideError: an override is not a data-config key.
        ConfigError: a value is out of range (crop_pct in (0, 1], a known interpolation ...).
    """
    unknown = sorted(set(overrides) - set(DATA_CONFIG_KEYS))
    if unknown:
        raise UnknownOverrideError(f"unknown data config key {unknown[0]!r}; valid keys are "
                                   f"{', '.join(DATA_CONFIG_KEYS)}."
                                   + suggestion(unknown[0], DATA_CONFIG_KEYS))
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if args is not None and not isinstance(args, Mapping):  # vitzoo's resolve_data_config(model)
        model, args = args if model is None else model, None
    config = dict(DEFAULT_DATA_CONFIG)
    source = pretrained_cfg or getattr(model, "pretrained_cfg", None) or {}
    config.update({k: source[k] for k in DATA_CONFIG_KEYS if source.get(k) is not None})
    cfg = getattr(model, "cfg", None)
    if cfg is not None and not pretrained_cfg:
        config["input_size"] = (cfg.in_chans, *cfg.img_size)
    if use_test_size and source.get("test_input_size") is not None:
        config["input_size"] = tuple(source["test_input_size"])
    if use_test_size and source.get("test_crop_pct"):
        config["crop_pct"] = source["test_crop_pct"]
    _from_args(args or {}, config)
    config.update(overrides)
    result = _checked(config)
    if verbose:
        logger.info("data config: %s", ", ".join(f"{k}={v}" for k, v in result.items()))
    return result


def _checked(config: dict[str, Any]) -> dict[str, Any]:
    input_size = tuple(int(v) for v in config["input_size"])
    if len(input_size) != 3 or min(input_size) < 1:
        raise ConfigError(f"input_size must be (channels, height, width), got {input_size!r}")
    check_interpolation(config["interpolation"])
    if not 0 < config["crop_pct"] <= 1:
        raise ConfigError(f"crop_pct must be in (0, 1], got {config['crop_pct']!r}")
    return {"input_size": input_size, "interpolation": config["interpolation"],
            "mean": _fit_channels(config["mean"], input_size[0], "mean"),
            "std": _fit_channels(config["std"], input_size[0], "std"),
            "crop_pct": float(config["crop_pct"]), "crop_mode": config["crop_mode"]}


def resolve_model_data_config(model: Any, args: Mapping[str, Any] | None = None,
                              pretrained_cfg: Mapping[str, Any] | None = None,
                              use_test_size: bool = False,
                              verbose: bool = False) -> dict[str, Any]:
    """:func:`resolve_data_config` with the model first (timm's function of this name)."""
    return resolve_data_config(args=args, pretrained_cfg=pretrained_cfg, model=model,
                               use_test_size=use_test_size, verbose=verbose)


def _check_timm_options(options: dict[str, Any]) -> None:
    for name, value in options.items():
        if name not in TIMM_NOOP_OPTIONS:
            known = [p for p in inspect.signature(create_transform).parameters
                     if p != "timm_options"]
            raise UnknownOverrideError(
                f"create_transform() got an unknown argument {name!r}."
                + suggestion(name, [*known, *TIMM_NOOP_OPTIONS]))
        if not TIMM_NOOP_OPTIONS[name](value):
            raise UnsupportedOptionError(
                f"create_transform({name}={value!r}) is a timm augmentation or output form "
                "vitzoo does not implement; compose it after vitzoo's steps, or build this "
                "pipeline with timm")


def _image_size(input_size: Any) -> tuple[int, int, int]:
    """timm's input_size: an int, ``(h, w)`` or ``(c, h, w)``."""
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        return 3, input_size, input_size
    size = tuple(int(v) for v in input_size)
    if len(size) == 2:
        return (3, *size)
    if len(size) != 3:
        raise ConfigError(f"input_size must be an int, (h, w) or (c, h, w), got {input_size!r}")
    return size


def _eval_steps(c: int, h: int, w: int, interpolation: str, crop_pct: float,
                crop_mode: str) -> list[Callable[..., Any]]:
    """timm's evaluation geometry: centre mode resizes keeping the aspect ratio (the shorter
    side to ``floor(size / crop_pct)``) and crops; squash resizes both sides, then crops."""
    if crop_mode not in CROP_MODES:
        if crop_mode == "border":
            raise UnsupportedOptionError("crop_mode='border' (timm's letterbox) is not "
                                         "implemented: use 'center' or 'squash'")
        raise ConfigError(f"crop_mode={crop_mode!r} is not one of "
                          f"{', '.join(map(repr, CROP_MODES))}")
    scaled = (math.floor(h / crop_pct), math.floor(w / crop_pct))
    if crop_mode == "squash":
        resize = Resize(scaled, interpolation=interpolation)
    elif scaled[0] == scaled[1]:
        resize = Resize(scaled[0], interpolation=interpolation)
    else:
        resize = Resize(scaled, interpolation=interpolation, keep_ratio=True)
    steps: list[Callable[..., Any]] = [resize, ToTensor(), EnsureChannels(c)]
    if not (crop_mode == "squash" and scaled == (h, w)):
        steps.append(CenterCrop((h, w)))
    return steps


def _train_steps(c: int, h: int, w: int, interpolation: str, scale: Sequence[float],
                 ratio: Sequence[float], hflip: float, vflip: float, color_jitter: Any,
                 color_jitter_prob: float | None,
                 grayscale_prob: float) -> list[Callable[..., Any]]:
    steps: list[Callable[..., Any]] = [
        ToTensor(), EnsureChannels(c),
        RandomResizedCrop((h, w), scale=scale, ratio=ratio, interpolation=interpolation)]
    if hflip > 0:
        steps.append(RandomHorizontalFlip(hflip))
    if vflip > 0:
        steps.append(RandomVerticalFlip(vflip))
    if color_jitter:
        factors = ((float(color_jitter),) * 3 if isinstance(color_jitter, (int, float))
                   else tuple(color_jitter))
        if len(factors) not in (3, 4):
            raise ConfigError(f"color_jitter must be a number or 3 or 4 values, got "
                              f"{color_jitter!r}")
        jitter = ColorJitter(*factors)
        steps.append(jitter if color_jitter_prob is None
                     else RandomApply(jitter, p=color_jitter_prob))
    if grayscale_prob:
        steps.append(RandomGrayscale(grayscale_prob))
    return steps


def _transform_config(config: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The data config a pipeline is built from: vitzoo's dict (with ``given`` on top), or
    timm's keyword arguments with timm's defaults."""
    if isinstance(config, Mapping):
        missing = [k for k in DATA_CONFIG_KEYS[:-1] if k not in config]
        if missing:
            raise ConfigError(f"the data config lacks {', '.join(missing)}; build it with "
                              f"resolve_data_config()")
        return {**DEFAULT_DATA_CONFIG, **config, **given}
    if config is not None and "input_size" in given:
        raise ConfigError("input_size was given twice (positionally and by name)")
    timm_defaults = {"input_size": 224 if config is None else config,
                     "interpolation": "bilinear", "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                     "crop_pct": 0.875, "crop_mode": "center"}
    return {**timm_defaults, **given}


def create_transform(config: Mapping[str, Any] | int | Sequence[int] | None = None,
                     train: bool | None = None, *, input_size: Any = None,
                     is_training: bool | None = None, no_aug: bool = False,
                     scale: Sequence[float] | None = None, ratio: Sequence[float] | None = None,
                     hflip: float = 0.5, vflip: float = 0.0, color_jitter: Any = None,
                     color_jitter_prob: float | None = None, grayscale_prob: float = 0.0,
                     interpolation: str | None = None, mean: Sequence[float] | None = None,
                     std: Sequence[float] | None = None, crop_pct: float | None = None,
                     crop_mode: str | None = None, eval_resize: str | None = None,
                     **timm_options: Any) -> Compose:
    """The training or evaluation pipeline of a data config, a :class:`Compose` from an image
    (PIL, uint8 array or tensor) to a normalised (C, H, W) float32 tensor: vitzoo's
    ``create_transform(config, train=False)`` and timm's ``create_transform(**cfg)``.

    Evaluation (timm's): resize keeping the aspect ratio so the image just covers
    ``floor((H, W) / crop_pct)``, centre-crop (H, W), normalise; ``crop_mode="squash"``
    resizes to ``floor((H, W) / crop_pct)`` first; PIL images are resized with Pillow, as
    timm does; ``eval_resize="resize"`` (Google's) resizes to (H, W) without a crop.
    Training: ``ToTensor, EnsureChannels, RandomResizedCrop`` (scale (0.08, 1), ratio
    (3/4, 4/3)), flips, colour jitter and random greyscale when asked, ``Normalize``.

    Args:
        config: a dict from :func:`resolve_data_config` (vitzoo's form; its ``crop_mode`` is
            used when present), or timm's first argument ``input_size``.
        train: the augmenting pipeline (vitzoo's name of timm's ``is_training``).
        input_size: an int, ``(h, w)`` or ``(c, h, w)`` (timm's form; default 224).
        is_training: timm's name of ``train``.
        no_aug: timm's: the evaluation geometry at crop_pct 1 when training.
        scale: RandomResizedCrop's area range; ratio: its aspect range.
        hflip: probability of a horizontal flip when training.
        vflip: probability of a vertical flip when training.
        color_jitter: timm's colour jitter (0.4 in timm's form, off in vitzoo's unless given).
        color_jitter_prob: probability of the colour jitter.
        grayscale_prob: probability of a random greyscale.
        interpolation: ``"bilinear"`` (timm's), ``"bicubic"``, or ``"random"`` (either).
        mean: normalisation mean (ImageNet's in timm's form).
        std: normalisation standard deviation (ImageNet's in timm's form).
        crop_pct: the evaluation crop (0.875 in timm's form).
        crop_mode: ``"center"`` or ``"squash"`` (these options: timm's defaults in timm's
            form; in vitzoo's they override the config).
        eval_resize: vitzoo's ``"crop"`` (timm / DeiT evaluation) or ``"resize"``.
        **timm_options: timm's other options (AutoAugment, random erasing, prefetcher ...),
            accepted at the values that leave the pipeline as it is.

    Raises:
        ConfigError: the data config lacks keys, or a value is out of range.
        UnsupportedOptionError: a timm option vitzoo does not implement (AutoAugment, random
            erasing, ``crop_mode="border"``, hue jitter ...).
    """
    _check_timm_options(timm_options)
    if train is not None and is_training is not None and train != is_training:
        raise ConfigError(f"train={train} and is_training={is_training} disagree")
    training = bool(train if train is not None else is_training)
    given = {"input_size": input_size, "interpolation": interpolation, "mean": mean,
             "std": std, "crop_pct": crop_pct, "crop_mode": crop_mode}
    cfg = _transform_config(config, {k: v for k, v in given.items() if v is not None})
    if not isinstance(config, Mapping) and color_jitter is None:
        color_jitter = 0.4  # timm's default
    if eval_resize not in (None, *_EVAL_RESIZES):
        raise ConfigError(f"eval_resize={eval_resize!r} is not 'crop' or 'resize'")
    c, h, w = _image_size(cfg["input_size"])
    mode, pct = cfg["crop_mode"], cfg["crop_pct"]
    if eval_resize == "resize" or (training and no_aug):  # timm's no_aug: Resize, CenterCrop
        mode, pct = "squash" if eval_resize == "resize" or h != w else "center", 1.0
    if training and not no_aug:
        interpolation = cfg["interpolation"]
        if interpolation != "random":
            check_interpolation(interpolation)
        steps = _train_steps(c, h, w, interpolation, scale or (0.08, 1.0),
                             ratio or (3 / 4, 4 / 3), hflip, vflip, color_jitter,
                             color_jitter_prob, grayscale_prob)
    else:
        interpolation = "bilinear" if cfg["interpolation"] == "random" else cfg["interpolation"]
        check_interpolation(interpolation)
        if not 0 < pct <= 1:
            raise ConfigError(f"crop_pct must be in (0, 1], got {pct!r}")
        steps = _eval_steps(c, h, w, interpolation, pct, mode)
    steps.append(Normalize(_fit_channels(cfg["mean"], c, "mean"),
                           _fit_channels(cfg["std"], c, "std")))
    return Compose(steps)
