"""The fine-tuning recipe as one frozen config, with the release's defaults and presets."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .._utils import suggestion
from ..errors import ConfigError, UnknownOverrideError

__all__ = ["PRESETS", "TrainConfig", "preset_config"]


@dataclass(frozen=True)
class TrainConfig:
    """How to fine-tune. The defaults are the recipe of Google's ViT release (and its PyTorch
    port) for CIFAR-10/100 from ImageNet-21k weights: SGD momentum 0.9, lr 0.03, no weight
    decay, 500 warmup steps then cosine decay to 0, 10,000 steps, batch 512 (by gradient
    accumulation), gradient clipping at norm 1.0.
    """

    steps: int = 10_000
    batch_size: int = 512
    """Global batch: samples per optimizer step, over all processes and accumulation steps."""
    micro_batch: int = 64
    """Samples per forward pass on one process; accumulation = batch / (world * micro)."""
    optimizer: str = "sgd"
    """``"sgd"`` (momentum) or ``"adamw"`` (with optional ``layer_decay``)."""
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 0.0
    layer_decay: float | None = None
    """AdamW only: the lr of block i is ``lr * layer_decay ** (depth + 1 - (i + 1))``."""
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 500
    schedule: str = "cosine"
    """``"cosine"`` or ``"linear"`` decay to 0 after the warmup."""
    clip_grad_norm: float | None = 1.0
    label_smoothing: float = 0.0
    eval_every: int = 500
    checkpoint_every: int | None = None
    """Steps between checkpoints (``last.safetensors`` + ``train_state.pt``); default
    ``eval_every``."""
    log_every: int = 50
    amp: str = "auto"
    """``"auto"`` (bf16 or fp16 on CUDA, off on CPU), ``"off"``, ``"bf16"``, ``"fp16"``."""
    seed: int = 0
    num_workers: int = 0
    train_scale: tuple[float, float] = (0.05, 1.0)
    """RandomResizedCrop scale of the training transform (the release uses 0.05-1)."""
    train_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    """RandomResizedCrop aspect-ratio range of the training transform."""
    hflip: float = 0.0
    """Horizontal-flip probability of the training transform (the release uses none)."""
    augment: bool = True
    """False: the training data get the evaluation transform."""
    distill: str | None = None
    """``None``, ``"soft"`` or ``"hard"`` (DeiT distillation from a teacher)."""
    distill_alpha: float = 0.5
    distill_tau: float = 1.0

    def __post_init__(self) -> None:
        _check_types_and_ranges(self)
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"optimizer={self.optimizer!r} is not 'sgd' or 'adamw'")
        if self.schedule not in ("cosine", "linear"):
            raise ConfigError(f"schedule={self.schedule!r} is not 'cosine' or 'linear'")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise ConfigError(f"amp={self.amp!r} is not 'auto', 'off', 'bf16' or 'fp16'")
        if self.distill not in (None, "soft", "hard"):
            raise ConfigError(f"distill={self.distill!r} is not None, 'soft' or 'hard'")
        if self.warmup_steps >= self.steps:
            raise ConfigError(f"warmup_steps={self.warmup_steps} must be less than "
                              f"steps={self.steps}: pass --warmup-steps N with N < {self.steps}")
        if self.layer_decay is not None and self.optimizer != "adamw":
            raise ConfigError("layer_decay needs optimizer='adamw'")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes``; an unknown field raises with the valid names."""
        valid = [f.name for f in dataclasses.fields(self)]
        unknown = [k for k in changes if k not in valid]
        if unknown:
            hints = "".join(suggestion(k, valid) for k in unknown)
            raise UnknownOverrideError(f"unknown training option(s) {unknown}.{hints} "
                                       f"Valid options: {', '.join(valid)}.")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# field -> (kind, low, high, low_open, high_open): "int" takes int (not bool), "float" takes a
# finite int or float; a bound of None is no bound. Fields not named are checked by choice.
_NUMBERS: dict[str, tuple[str, float | None, float | None, bool, bool]] = {
    "steps": ("int", 1, None, False, False),
    "batch_size": ("int", 1, None, False, False),
    "micro_batch": ("int", 1, None, False, False),
    "lr": ("float", 0, None, True, False),
    "momentum": ("float", 0, 1, False, True),
    "weight_decay": ("float", 0, None, False, False),
    "layer_decay": ("float", 0, 1, True, False),
    "warmup_steps": ("int", 0, None, False, False),
    "clip_grad_norm": ("float", 0, None, True, False),
    "label_smoothing": ("float", 0, 1, False, True),
    "eval_every": ("int", 1, None, False, False),
    "checkpoint_every": ("int", 1, None, False, False),
    "log_every": ("int", 1, None, False, False),
    "seed": ("int", 0, 2**63 - 1, False, False),
    "num_workers": ("int", 0, None, False, False),
    "hflip": ("float", 0, 1, False, False),
    "distill_alpha": ("float", 0, 1, False, False),
    "distill_tau": ("float", 0, None, True, False),
}
_OPTIONAL = {"layer_decay", "clip_grad_norm", "checkpoint_every"}
_PAIRS = {"betas": (0, 1, False, True), "train_scale": (0, 1, True, False),
          "train_ratio": (0, None, True, False)}
_FLAGS = ("augment",)


def _number_problem(value: Any, kind: str, low: float | None, high: float | None,
                    low_open: bool, high_open: bool) -> str | None:
    """Why ``value`` is not a number of ``kind`` in the range, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            kind == "int" and not isinstance(value, int)):
        return f"is {type(value).__name__}, not {'an integer' if kind == 'int' else 'a number'}"
    if not math.isfinite(value):
        return "is not finite"
    if low is not None and (value <= low if low_open else value < low):
        return f"must be {'greater than' if low_open else 'at least'} {low}"
    if high is not None and (value >= high if high_open else value > high):
        return f"must be {'less than' if high_open else 'at most'} {high}"
    return None


def _check_types_and_ranges(cfg: TrainConfig) -> None:
    """Refuse a field of the wrong type or out of range (a string for a number, True for 1,
    NaN, a negative learning rate) with the field's name, before anything runs."""
    for name, spec in _NUMBERS.items():
        value = getattr(cfg, name)
        if value is None and name in _OPTIONAL:
            continue
        problem = _number_problem(value, *spec)
        if problem:
            raise ConfigError(f"training option {name}={value!r} {problem}")
    for name, bounds in _PAIRS.items():
        value = getattr(cfg, name)
        if not isinstance(value, tuple | list) or len(value) != 2:
            raise ConfigError(f"training option {name}={value!r} must be a pair of numbers "
                              "(low, high)")
        for item in value:
            problem = _number_problem(item, "float", *bounds)
            if problem:
                raise ConfigError(f"training option {name}={value!r}: {item!r} {problem}")
        if name != "betas" and value[0] > value[1]:
            raise ConfigError(f"training option {name}={value!r} must be (low, high) with "
                              "low <= high")
    for name in _FLAGS:
        if not isinstance(getattr(cfg, name), bool):
            raise ConfigError(f"training option {name}={getattr(cfg, name)!r} must be True or "
                              "False")


# "digits": a tiny ViT trained from scratch on the bundled 8x8 digits in 100-220 s on two CPU
# cores (no pretrained weights exist for 8x8 grey images); 97.21 % / 97.77 % test accuracy
# measured on two machines (docs/finetune.md).
PRESETS: dict[str, TrainConfig] = {
    "vit": TrainConfig(),
    "digits": TrainConfig(steps=2000, batch_size=64, micro_batch=64, optimizer="adamw", lr=2e-3,
                          weight_decay=0.05, warmup_steps=200, eval_every=500,
                          label_smoothing=0.1, train_scale=(0.7, 1.0), train_ratio=(0.8, 1.25)),
}


_SCALED_WITH_STEPS = ("warmup_steps", "eval_every", "checkpoint_every")


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """The recipe preset ``name`` with ``overrides`` (TrainConfig fields).

    When ``steps`` is overridden, the preset's ``warmup_steps``, ``eval_every`` and
    ``checkpoint_every`` that are not overridden too scale with it, so that they keep their
    share of the run: the digits preset's 200 warmup steps of 2000 become 10 of 100. A warmup
    stays at least one step (when the preset has one) and less than ``steps``; intervals stay
    at least one step.

    Raises:
        ConfigError: an unknown preset or an invalid value.
        UnknownOverrideError: an override that is not a TrainConfig field.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: {', '.join(PRESETS)}")
    preset, changes = PRESETS[name], dict(overrides)
    steps = overrides.get("steps")
    if isinstance(steps, int) and steps >= 1 and steps != preset.steps:
        ratio = steps / preset.steps
        for key in _SCALED_WITH_STEPS:
            value = getattr(preset, key)
            if key in overrides or not value:
                continue
            changes[key] = max(1, round(value * ratio))
        if "warmup_steps" in changes and "warmup_steps" not in overrides:
            changes["warmup_steps"] = min(changes["warmup_steps"], steps - 1)
    return preset.replace(**changes)
