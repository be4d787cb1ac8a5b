"""Image preprocessing in pure torch: decoding, resizing, cropping, flipping, normalising.

Tensors are (C, H, W) float32 in [0, 1] until :class:`Normalize`. The geometry follows
torchvision's documented conventions (shorter-side resize, centre-crop rounding, the
Inception-style random resized crop of Szegedy et al., "Going Deeper with Convolutions",
CVPR 2015), so the preprocessing of timm / DeiT / big_vision checkpoints can be reproduced.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._utils import suggestion
from ..errors import ConfigError, ImageSizeError, UnknownOverrideError
from ..pretrained import PretrainedCfg

__all__ = [
    "CenterCrop",
    "Compose",
    "EnsureChannels",
    "Normalize",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "Resize",
    "ToTensor",
    "create_transform",
    "resolve_data_config",
]

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
DATA_CONFIG_KEYS = ("input_size", "mean", "std", "crop_pct", "interpolation")
# The defaults of model.pretrained_cfg's schema: timm's for ViTs (mean = std = 0.5, crop 0.9).
DEFAULT_DATA_CONFIG: dict[str, Any] = {k: getattr(PretrainedCfg(), k) for k in DATA_CONFIG_KEYS}


def _size_pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ConfigError(f"{name} must be a positive int or a (height, width) pair, got {size!r}")
    return int(size[0]), int(size[1])


def _check_interpolation(interpolation: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"interpolation={interpolation!r} is not one of "
                          f"{', '.join(map(repr, INTERPOLATIONS))}")


def _check_range(value: Sequence[float], name: str) -> tuple[float, float]:
    if len(value) != 2 or not 0 < value[0] <= value[1]:
        raise ConfigError(f"{name} must be a (min, max) pair with 0 < min <= max, got {value!r}")
    return float(value[0]), float(value[1])


def _check_image(x: Any, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim < 3 or not x.is_floating_point():
        raise ImageSizeError(f"{name} expects a float tensor (..., C, H, W); got "
                             f"{getattr(x, 'shape', type(x).__name__)}: put ToTensor() first")
    return x


class ToTensor:
    """Convert a PIL image, a uint8 array or a tensor to a float32 (C, H, W) tensor in [0, 1].

    Accepts a ``PIL.Image.Image`` (converted to RGB unless it is L / LA / RGB / RGBA), a uint8
    numpy array (H, W) or (H, W, C), a uint8 tensor (C, H, W) (divided by 255) or a floating
    tensor (C, H, W) (cast to float32, values kept).
    """

    def __call__(self, image: Any) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            if image.ndim != 3:
                raise ImageSizeError(f"ToTensor expects a (C, H, W) tensor, got shape "
                                     f"{tuple(image.shape)}")
            if image.dtype == torch.uint8:
                return image.float().div(255.0)
            if image.is_floating_point():
                return image.float()
            raise ImageSizeError(f"ToTensor expects a uint8 or float tensor, got {image.dtype}")
        if not isinstance(image, np.ndarray):
            image = _pil_to_array(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ImageSizeError(f"ToTensor expects a uint8 array (H, W) or (H, W, C), got "
                                 f"{image.dtype} {image.shape}; convert with .astype(np.uint8) "
                                 f"or pass a float (C, H, W) tensor")
        if image.ndim == 2:
            image = image[:, :, None]  # (H, W, 1)
        # np.array copies: torch.from_numpy warns on the read-only arrays PIL hands out.
        return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255.0)  # (C, H, W)

    def __repr__(self) -> str:
        return "ToTensor()"


def _pil_to_array(image: Any) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as err:
        raise TypeError(f"ToTensor expects a PIL image, a numpy array or a tensor, got "
                        f"{type(image).__name__}") from err
    if not isinstance(image, Image.Image):
        raise TypeError(f"ToTensor expects a PIL image, a numpy array or a tensor, got "
                        f"{type(image).__name__}")
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")
    return np.asarray(image)


class EnsureChannels:
    """Give an image ``channels`` channels: grey -> RGB repeats, RGB -> grey is the mean.

    Args:
        channels: the channel count the model expects.
    """

    def __init__(self, channels: int) -> None:
        if channels < 1:
            raise ConfigError(f"channels must be positive, got {channels}")
        self.channels = channels

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        c = _check_image(x, "EnsureChannels").shape[-3]
        if c == self.channels:
            return x
        if (c, self.channels) == (1, 3):
            return x.repeat_interleave(3, dim=-3)  # (..., 3, H, W)
        if (c, self.channels) == (3, 1):
            return x.mean(dim=-3, keepdim=True)  # (..., 1, H, W)
        raise ConfigError(f"cannot turn a {c}-channel image into {self.channels} channels; only "
                          f"1 <-> 3 is automatic, convert the image first (e.g. PIL's "
                          f"image.convert('RGB'))")

    def __repr__(self) -> str:
        return f"EnsureChannels(channels={self.channels})"


class Resize:
    """Resize with ``torch.nn.functional.interpolate``.

    Args:
        size: an int resizes the shorter side to ``size`` and the longer side to
            ``int(size * long / short)`` (torchvision's rule); ``(h, w)`` resizes exactly.
        interpolation: ``"bicubic"``, ``"bilinear"`` (both ``align_corners=False``) or
            ``"nearest"``. Bicubic overshoots, so its output is clamped to [0, 1]: apply
            ``Resize`` before :class:`Normalize`.
        antialias: low-pass filter when downsampling (bilinear / bicubic only), as PIL does.
    """

    def __init__(self, size: int | Sequence[int], *, interpolation: str = "bicubic",
                 antialias: bool = True) -> None:
        _check_interpolation(interpolation)
        self.shorter = size if isinstance(size, int) and not isinstance(size, bool) else None
        _size_pair(size, "size")
        self.size = size
        self.interpolation = interpolation
        self.antialias = antialias

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) an image of ``height`` x ``width`` is resized to."""
        if self.shorter is None:
            return _size_pair(self.size, "size")
        if height <= width:
            return self.shorter, int(self.shorter * width / height)
        return int(self.shorter * height / width), self.shorter

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.output_size(*_check_image(x, "Resize").shape[-2:])
        if (h, w) == tuple(x.shape[-2:]):
            return x
        smooth = self.interpolation != "nearest"
        y = F.interpolate(x.reshape(-1, *x.shape[-3:]), size=(h, w), mode=self.interpolation,
                          align_corners=False if smooth else None,
                          antialias=self.antialias and smooth)  # (B, C, h, w)
        if self.interpolation == "bicubic":
            y = y.clamp_(0.0, 1.0)
        return y.reshape(*x.shape[:-2], h, w)  # (..., C, h, w)

    def __repr__(self) -> str:
        return (f"Resize(size={self.size!r}, interpolation={self.interpolation!r}, "
                f"antialias={self.antialias})")


class CenterCrop:
    """Crop the centre; an image smaller than the crop is padded with zeros first.

    The top-left corner is ``int(round((H - h) / 2))``, ``int(round((W - w) / 2))``
    (torchvision's convention, so odd differences round half to even).

    Args:
        size: an int for a square crop or ``(h, w)``.
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _size_pair(size, "size")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.size
        H, W = _check_image(x, "CenterCrop").shape[-2:]
        if h > H or w > W:
            pad_h, pad_w = max(h - H, 0), max(w - W, 0)
            x = F.pad(x, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2))
            H, W = x.shape[-2:]
        top, left = int(round((H - h) / 2.0)), int(round((W - w) / 2.0))
        return x[..., top:top + h, left:left + w]  # (..., C, h, w)

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


class RandomResizedCrop:
    """Crop a random area and aspect ratio, then resize it (Inception-style augmentation).

    Args:
        size: output size, an int or ``(h, w)``.
        scale: range of the crop's area as a fraction of the image's, sampled uniformly.
        ratio: range of the crop's aspect ratio w / h, sampled log-uniformly.
        interpolation: as in :class:`Resize` (antialiased).
    """

    uses_generator = True

    def __init__(self, size: int | Sequence[int], *, scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), interpolation: str = "bicubic") -> None:
        self.size = _size_pair(size, "size")
        self.scale = _check_range(scale, "scale")
        self.ratio = _check_range(ratio, "ratio")
        self.resize = Resize(self.size, interpolation=interpolation)

    def get_params(self, height: int, width: int,
                   generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
        """Sample a crop box of an image of ``height`` x ``width``.

        Up to ten tries draw an area fraction from ``scale`` and a log-uniform aspect ratio
        from ``ratio``, with ``w = round(sqrt(area * ratio))`` and ``h = round(sqrt(area /
        ratio))``; the first box that fits is placed uniformly at random. If none fits, the
        largest central box whose ratio is ``ratio`` clamped (the whole image if it is
        already within ``ratio``) is used.

        Returns:
            ``(top, left, h, w)``.
        """
        area = height * width
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target_area = area * torch.empty(1).uniform_(*self.scale, generator=generator).item()
            aspect = math.exp(torch.empty(1).uniform_(log_lo, log_hi, generator=generator).item())
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (1,), generator=generator).item())
                left = int(torch.randint(0, width - w + 1, (1,), generator=generator).item())
                return top, left, h, w
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            w, h = int(round(height * self.ratio[1])), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        top, left, h, w = self.get_params(*_check_image(x, "RandomResizedCrop").shape[-2:],
                                          generator=generator)
        return self.resize(x[..., top:top + h, left:left + w])  # (..., C, *size)

    def __repr__(self) -> str:
        return (f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio="
                f"({self.ratio[0]:.4g}, {self.ratio[1]:.4g}), "
                f"interpolation={self.resize.interpolation!r})")


class RandomHorizontalFlip:
    """Flip the last (width) axis with probability ``p``.

    Args:
        p: flip probability in [0, 1].
    """

    uses_generator = True

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if torch.rand(1, generator=generator).item() < self.p:
            return x.flip(-1)
        return x

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Normalize:
    """``(x - mean) / std`` per channel.

    Args:
        mean: one value per channel.
        std: one positive value per channel.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != len(std) or not len(mean):
            raise ConfigError(f"mean and std need one value per channel, got mean={mean!r}, "
                              f"std={std!r}")
        if any(s <= 0 for s in std):
            raise ConfigError(f"std must be positive, got {std!r}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if _check_image(x, "Normalize").shape[-3] != len(self.mean):
            raise ImageSizeError(f"Normalize has {len(self.mean)} channel statistics but the "
                                 f"image has {x.shape[-3]} channels; put EnsureChannels first")
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)  # (C, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Compose:
    """Apply transforms in order; ``generator`` reaches the random ones.

    Args:
        transforms: callables; those with ``uses_generator = True`` also receive ``generator``.
    """

    def __init__(self, transforms: Sequence[Callable[..., Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Any, generator: torch.Generator | None = None) -> Any:
        for t in self.transforms:
            x = t(x, generator=generator) if getattr(t, "uses_generator", False) else t(x)
        return x

    def __repr__(self) -> str:
        return "Compose([\n" + "".join(f"    {t!r},\n" for t in self.transforms) + "])"


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


def resolve_data_config(model: Any = None, **overrides: Any) -> dict[str, Any]:
    """The preprocessing a model expects, as a dict for :func:`create_transform`.

    Starts from the defaults (input (3, 224, 224), mean = std = 0.5, crop_pct 0.9, bicubic),
    takes the keys ``model.pretrained_cfg`` has, then ``input_size`` from ``model.cfg``
    (``(in_chans, *img_size)``: the built model wins over its weights' record), then
    ``overrides``. Mean and std are averaged or repeated to the input's channel count.

    Args:
        model: a vitzoo model, or None for the defaults.
        **overrides: any of ``input_size``, ``mean``, ``std``, ``crop_pct``, ``interpolation``.

    Returns:
        A dict with exactly those five keys.
    """
    unknown = sorted(set(overrides) - set(DATA_CONFIG_KEYS))
    if unknown:
        raise UnknownOverrideError(f"unknown data config key {unknown[0]!r}; valid keys are "
                                   f"{', '.join(DATA_CONFIG_KEYS)}."
                                   + suggestion(unknown[0], DATA_CONFIG_KEYS))
    config = dict(DEFAULT_DATA_CONFIG)
    pretrained = getattr(model, "pretrained_cfg", None) or {}
    config.update({k: pretrained[k] for k in DATA_CONFIG_KEYS if k in pretrained})
    cfg = getattr(model, "cfg", None)
    if cfg is not None:
        config["input_size"] = (cfg.in_chans, *cfg.img_size)
    config.update(overrides)
    input_size = tuple(int(v) for v in config["input_size"])
    if len(input_size) != 3 or min(input_size) < 1:
        raise ConfigError(f"input_size must be (channels, height, width), got {input_size!r}")
    _check_interpolation(config["interpolation"])
    if not 0 < config["crop_pct"] <= 1:
        raise ConfigError(f"crop_pct must be in (0, 1], got {config['crop_pct']!r}")
    return {"input_size": input_size,
            "mean": _fit_channels(config["mean"], input_size[0], "mean"),
            "std": _fit_channels(config["std"], input_size[0], "std"),
            "crop_pct": float(config["crop_pct"]), "interpolation": config["interpolation"]}


def create_transform(config: dict[str, Any], train: bool = False, *,
                     scale: Sequence[float] = (0.08, 1.0),
                     ratio: Sequence[float] = (3 / 4, 4 / 3), hflip: float = 0.5,
                     eval_resize: str = "crop") -> Compose:
    """Build the training or evaluation pipeline of a data config.

    Training: ``ToTensor, EnsureChannels, RandomResizedCrop, RandomHorizontalFlip (if
    hflip > 0), Normalize``. Evaluation with ``eval_resize="crop"`` (timm / DeiT): resize the
    shorter side to ``floor(H / crop_pct)``, then centre-crop (H, W); a non-square (H, W)
    is resized to ``(floor(H / crop_pct), floor(W / crop_pct))`` instead. With
    ``eval_resize="resize"`` (Google's big_vision evaluation) the image is resized to (H, W).

    Args:
        config: a dict from :func:`resolve_data_config`.
        train: the augmenting pipeline instead of the deterministic one.
        scale, ratio: :class:`RandomResizedCrop`'s ranges.
        hflip: horizontal flip probability; 0 leaves the flip out.
        eval_resize: ``"crop"`` or ``"resize"``.

    Returns:
        A :class:`Compose` mapping an image to a normalised (C, H, W) float32 tensor.
    """
    if eval_resize not in ("crop", "resize"):
        raise ConfigError(f"eval_resize={eval_resize!r} is not 'crop' or 'resize'")
    missing = [k for k in DATA_CONFIG_KEYS if k not in config]
    if missing:
        raise ConfigError(f"the data config lacks {', '.join(missing)}; build it with "
                          f"resolve_data_config()")
    c, h, w = config["input_size"]
    interpolation = config["interpolation"]
    steps: list[Callable[..., Any]] = [ToTensor(), EnsureChannels(c)]
    if train:
        steps.append(RandomResizedCrop((h, w), scale=scale, ratio=ratio,
                                       interpolation=interpolation))
        if hflip > 0:
            steps.append(RandomHorizontalFlip(hflip))
    elif eval_resize == "resize":
        steps.append(Resize((h, w), interpolation=interpolation))
    else:
        crop_pct = config["crop_pct"]
        scaled: int | tuple[int, int] = int(math.floor(h / crop_pct))
        if h != w:
            scaled = (int(math.floor(h / crop_pct)), int(math.floor(w / crop_pct)))
        steps += [Resize(scaled, interpolation=interpolation), CenterCrop((h, w))]
    steps.append(Normalize(config["mean"], config["std"]))
    return Compose(steps)
