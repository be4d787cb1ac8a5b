"""Image transforms in pure torch (+ Pillow for PIL images): resizing, cropping, flipping,
colour jitter, normalising.

Tensors are (C, H, W) float32 in [0, 1] until :class:`Normalize`. The geometry follows
torchvision's documented conventions (shorter-side resize, centre-crop rounding, the
Inception-style random resized crop of Szegedy et al., "Going Deeper with Convolutions",
CVPR 2015), and :class:`Resize` resizes PIL images with Pillow as torchvision does, so the
preprocessing of timm / DeiT / big_vision checkpoints is reproduced. The pipelines built from
a data config are in :mod:`vitzoo.data.pipeline`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, ImageSizeError, UnsupportedOptionError

__all__ = [
    "INTERPOLATIONS",
    "CenterCrop",
    "ColorJitter",
    "Compose",
    "EnsureChannels",
    "Normalize",
    "RandomApply",
    "RandomGrayscale",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "RandomVerticalFlip",
    "Resize",
    "ToTensor",
    "check_interpolation",
    "is_pil_image",
]

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
_GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL and torchvision


def _size_pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    size = cast(Sequence[int], size)  # an int was paired; a bool still fails len() below
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ConfigError(f"{name} must be a positive int or a (height, width) pair, got {size!r}")
    return int(size[0]), int(size[1])


def check_interpolation(interpolation: str) -> None:
    """Raise :class:`ConfigError` unless ``interpolation`` is one of :data:`INTERPOLATIONS`."""
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"interpolation={interpolation!r} is not one of "
                          f"{', '.join(map(repr, INTERPOLATIONS))}")


def _check_range(value: Sequence[float], name: str) -> tuple[float, float]:
    if len(value) != 2 or not 0 < value[0] <= value[1]:
        raise ConfigError(f"{name} must be a (min, max) pair with 0 < min <= max, got {value!r}")
    return float(value[0]), float(value[1])


def is_pil_image(x: Any) -> bool:
    """Whether ``x`` is a PIL image (without importing Pillow: one exists only if it is loaded)."""
    image_module = sys.modules.get("PIL.Image")
    return image_module is not None and isinstance(x, image_module.Image)


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
    """Resize a PIL image with Pillow, a tensor with ``torch.nn.functional.interpolate``.

    PIL images stay PIL images, resized as torchvision resizes them (so timm's and DeiT's
    evaluation pipelines are reproduced to the pixel); tensors and uint8 arrays become float
    tensors in [0, 1] (``ToTensor`` first).

    Args:
        size: an int resizes the shorter side to ``size`` and the longer side to
            ``int(size * long / short)`` (torchvision's rule); ``(h, w)`` resizes exactly, or,
            with ``keep_ratio``, by one factor so the image just covers ``(h, w)``.
        interpolation: ``"bicubic"``, ``"bilinear"`` or ``"nearest"``. On tensors
            (``align_corners=False``) bicubic overshoots, so its output is clamped to [0, 1]:
            apply ``Resize`` before :class:`Normalize`.
        antialias: low-pass filter tensors when downsampling (bilinear / bicubic), as Pillow
            always does.
        keep_ratio: timm's ``ResizeKeepRatio``: the output is ``round(H / r), round(W / r)``
            with ``r = min(H / h, W / w)``.
    """

    def __init__(self, size: int | Sequence[int], *, interpolation: str = "bicubic",
                 antialias: bool = True, keep_ratio: bool = False) -> None:
        check_interpolation(interpolation)
        self.shorter = size if isinstance(size, int) and not isinstance(size, bool) else None
        _size_pair(size, "size")
        if keep_ratio and self.shorter is not None:
            raise ConfigError("keep_ratio needs a (height, width) size; an int size already "
                              "keeps the ratio")
        self.size = size
        self.interpolation = interpolation
        self.antialias = antialias
        self.keep_ratio = keep_ratio

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) an image of ``height`` x ``width`` is resized to."""
        if self.shorter is None:
            h, w = _size_pair(self.size, "size")
            if not self.keep_ratio:
                return h, w
            ratio = min(height / h, width / w)
            return round(height / ratio), round(width / ratio)
        if height <= width:
            return self.shorter, int(self.shorter * width / height)
        return int(self.shorter * height / width), self.shorter

    def __call__(self, x: Any) -> Any:
        if is_pil_image(x):
            return self._resize_pil(x)
        if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
            x = ToTensor()(x)
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

    def _resize_pil(self, image: Any) -> Any:
        from PIL import Image

        if image.mode not in ("L", "LA", "RGB", "RGBA"):  # as ToTensor reads them
            image = image.convert("RGB")
        h, w = self.output_size(image.height, image.width)
        if (h, w) == (image.height, image.width):
            return image
        resample = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                    "nearest": Image.Resampling.NEAREST}[self.interpolation]
        return image.resize((w, h), resample)

    def __repr__(self) -> str:
        return (f"Resize(size={self.size!r}, interpolation={self.interpolation!r}, "
                f"antialias={self.antialias}" + (", keep_ratio=True)" if self.keep_ratio
                                                 else ")"))


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
        interpolation: as in :class:`Resize` (antialiased), or ``"random"``: bilinear or
            bicubic with equal chance for each image (timm's training default).
    """

    uses_generator = True

    def __init__(self, size: int | Sequence[int], *, scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), interpolation: str = "bicubic") -> None:
        self.size = _size_pair(size, "size")
        self.scale = _check_range(scale, "scale")
        self.ratio = _check_range(ratio, "ratio")
        modes = ("bilinear", "bicubic") if interpolation == "random" else (interpolation,)
        self.resizes = [Resize(self.size, interpolation=mode) for mode in modes]
        self.resize = self.resizes[-1]
        self.interpolation = interpolation

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
        height, width = _check_image(x, "RandomResizedCrop").shape[-2:]
        top, left, h, w = self.get_params(height, width, generator=generator)
        resize = self.resize
        if len(self.resizes) > 1:
            resize = self.resizes[int(torch.randint(2, (1,), generator=generator).item())]
        out: torch.Tensor = resize(x[..., top:top + h, left:left + w])  # (..., C, *size)
        return out

    def __repr__(self) -> str:
        return (f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio="
                f"({self.ratio[0]:.4g}, {self.ratio[1]:.4g}), "
                f"interpolation={self.interpolation!r})")


class _RandomFlip:
    """Flip one axis (``_axis``) with probability ``p``; the two flips below name the axis."""

    uses_generator = True
    _axis = -1

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if torch.rand(1, generator=generator).item() < self.p:
            return x.flip(self._axis)
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class RandomHorizontalFlip(_RandomFlip):
    """Flip the last (width) axis with probability ``p``.

    Args:
        p: flip probability in [0, 1].
    """

    _axis = -1


class RandomVerticalFlip(_RandomFlip):
    """Flip the height axis with probability ``p``.

    Args:
        p: flip probability in [0, 1].
    """

    _axis = -2


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Luma ``(..., 1, H, W)`` of an RGB image (a 1-channel image is its own)."""
    if x.shape[-3] == 1:
        return x
    r, g, b = x.unbind(dim=-3)
    return (_GREY_WEIGHTS[0] * r + _GREY_WEIGHTS[1] * g + _GREY_WEIGHTS[2] * b).unsqueeze(-3)


def _factor_range(value: float | Sequence[float], name: str) -> tuple[float, float] | None:
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"{name} jitter must be >= 0, got {value}")
        return None if value == 0 else (max(0.0, 1.0 - value), 1.0 + value)
    return _check_range(value, name)


class ColorJitter:
    """Random brightness, contrast and saturation, in a random order (torchvision's rules on
    tensors in [0, 1]).

    Each factor is drawn uniformly from ``[max(0, 1 - v), 1 + v]`` (or the ``(min, max)``
    given): brightness scales the image, contrast blends it with its mean luma, saturation
    with its luma image; results are clamped to [0, 1].

    Args:
        brightness: jitter strength (0 leaves the property alone).
        contrast: jitter strength (0 leaves the property alone).
        saturation: jitter strength (0 leaves the property alone).
        hue: must be 0 (hue jitter is not implemented).
    """

    uses_generator = True

    def __init__(self, brightness: float | Sequence[float] = 0.0,
                 contrast: float | Sequence[float] = 0.0,
                 saturation: float | Sequence[float] = 0.0, hue: float = 0.0) -> None:
        if hue:
            raise UnsupportedOptionError("hue jitter is not implemented: pass three colour "
                                         "jitter values (brightness, contrast, saturation)")
        self.ranges = {"brightness": _factor_range(brightness, "brightness"),
                       "contrast": _factor_range(contrast, "contrast"),
                       "saturation": _factor_range(saturation, "saturation")}

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = _check_image(x, "ColorJitter")
        names = list(self.ranges)
        for i in torch.randperm(len(names), generator=generator).tolist():
            bounds = self.ranges[names[i]]
            if bounds is None:
                continue
            f = torch.empty(1).uniform_(*bounds, generator=generator).item()
            if names[i] == "brightness":
                x = (x * f).clamp(0.0, 1.0)
            elif names[i] == "contrast":
                mean = _grey(x).mean(dim=(-3, -2, -1), keepdim=True)  # (..., 1, 1, 1)
                x = (f * x + (1.0 - f) * mean).clamp(0.0, 1.0)
            elif x.shape[-3] == 3:  # saturation: nothing to do for a grey image
                x = (f * x + (1.0 - f) * _grey(x)).clamp(0.0, 1.0)
        return x

    def __repr__(self) -> str:
        return "ColorJitter(" + ", ".join(f"{k}={v}" for k, v in self.ranges.items()) + ")"


class RandomGrayscale:
    """Replace every channel by the luma with probability ``p`` (the channel count stays).

    Args:
        p: probability in [0, 1].
    """

    uses_generator = True

    def __init__(self, p: float = 0.1) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if torch.rand(1, generator=generator).item() < self.p:
            return _grey(_check_image(x, "RandomGrayscale")).expand_as(x).clone()
        return x

    def __repr__(self) -> str:
        return f"RandomGrayscale(p={self.p})"


class RandomApply:
    """Apply ``transform`` with probability ``p``.

    Args:
        transform: a transform (given the generator if it takes one).
        p: probability in [0, 1].
    """

    uses_generator = True

    def __init__(self, transform: Callable[..., Any], p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"p must be in [0, 1], got {p}")
        self.transform = transform
        self.p = p

    def __call__(self, x: Any, generator: torch.Generator | None = None) -> Any:
        if torch.rand(1, generator=generator).item() >= self.p:
            return x
        if getattr(self.transform, "uses_generator", False):
            return self.transform(x, generator=generator)
        return self.transform(x)

    def __repr__(self) -> str:
        return f"RandomApply({self.transform!r}, p={self.p})"


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
