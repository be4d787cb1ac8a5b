"""ViTDet's simple feature pyramid: multi-scale maps from a plain ViT's last feature map.

Li, Mao, Girshick and He, "Exploring Plain Vision Transformer Backbones for Object Detection"
(ECCV 2022), section 3: from the single map at stride s (the patch size), scales 4, 2, 1 and
1/2 give strides s/4, s/2, s and 2s (4, 8, 16, 32 for 16-pixel patches) by two stride-2
transposed convolutions (with a channel LayerNorm and GELU between them), one, none, or a
stride-2 max-pool; each level then has a 1x1 and a 3x3 convolution, each followed by a
channel LayerNorm (ViTDet's ``norm="LN"``, convolutions without bias).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .weight_init import check_init_mode, lecun_normal_

__all__ = ["SCALE_FACTORS", "SimpleFeaturePyramid"]

SCALE_FACTORS = (4.0, 2.0, 1.0, 0.5)
"""ViTDet's scales, relative to the input map."""


class _ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of ``(B, C, H, W)`` maps (ViTDet's "LN")."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


def _resampler(scale: float, dim: int, eps: float) -> tuple[list[nn.Module], int]:
    """The layers taking a ``dim``-channel map to ``scale`` times its size, and their width."""
    if scale == 4.0:
        return [nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2),
                _ChannelNorm(dim // 2, eps=eps), nn.GELU(),
                nn.ConvTranspose2d(dim // 2, dim // 4, kernel_size=2, stride=2)], dim // 4
    if scale == 2.0:
        return [nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2)], dim // 2
    if scale == 1.0:
        return [], dim
    return [nn.MaxPool2d(kernel_size=2, stride=2)], dim


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's pyramid over one ``(B, C, H, W)`` map, or over a backbone's last map.

    Built on its own, ``forward`` takes the backbone's map; built with :meth:`from_backbone`
    (or ``backbone=``), ``forward`` takes images and runs the backbone first (its last block's
    output, as ViTDet uses it). Either way it returns one map per scale, finest first.

    Args:
        in_channels: channels of the input map (the ViT width D).
        out_channels: channels of every level (ViTDet: 256).
        scale_factors: a subset of ``(4.0, 2.0, 1.0, 0.5)``, finest first.
        in_stride: stride of the input map in pixels (the patch size, or a hybrid's stride).
        top_block: add a last level at twice the coarsest stride by a stride-2 subsampling
            (detectron2's ``LastLevelMaxPool``, ViTDet's "p6").
        norm_eps: epsilon of the channel LayerNorms (1e-6, ViTDet's).
        backbone: a model with ``forward_intermediates`` (vitzoo's ViTs) or a
            ``features_only`` model whose last output is the map; None for a map input.
        backbone_norm: apply the backbone's final norm to its map (ViTDet does not).
        weight_init: ``"timm"`` (PyTorch's default conv init) or ``"jax"`` (LeCun normal).

    Attributes:
        feature_info: one ``dict(module, num_chs, reduction, name)`` per output, timm's
            description (``name`` is detectron2's ``p2``, ``p3`` ... for stride 4, 8 ...).

    Raises:
        ConfigError: an unknown scale, a stride that is not a whole number of pixels, or a
            width the 4x branch cannot quarter.
    """

    def __init__(self, in_channels: int, *, out_channels: int = 256,
                 scale_factors: Sequence[float] = SCALE_FACTORS, in_stride: int = 16,
                 top_block: bool = False, norm_eps: float = 1e-6,
                 backbone: nn.Module | None = None, backbone_norm: bool = False,
                 weight_init: str = "timm") -> None:
        super().__init__()
        _check(in_channels, out_channels, scale_factors, in_stride)
        self.scale_factors = tuple(float(s) for s in scale_factors)
        self.in_stride = in_stride
        self.backbone = backbone
        self.backbone_norm = backbone_norm
        self.top_block = top_block
        self.stages = nn.ModuleList()
        self.feature_info: list[dict[str, Any]] = []
        for i, scale in enumerate(self.scale_factors):
            layers, width = _resampler(scale, in_channels, norm_eps)
            self.stages.append(nn.Sequential(
                *layers,
                nn.Conv2d(width, out_channels, kernel_size=1, bias=False),
                _ChannelNorm(out_channels, eps=norm_eps),
                nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
                _ChannelNorm(out_channels, eps=norm_eps),
            ))
            self._describe(f"stages.{i}", out_channels, int(in_stride / scale))
        if top_block:
            self._describe("top_block", out_channels, 2 * self.feature_info[-1]["reduction"])
        self.init_weights(weight_init)

    def _describe(self, module: str, channels: int, stride: int) -> None:
        level = math.log2(stride)
        name = f"p{int(level)}" if level.is_integer() else f"stride{stride}"
        self.feature_info.append({"module": module, "num_chs": channels, "reduction": stride,
                                  "name": name})

    @classmethod
    def from_backbone(cls, model: nn.Module, *, out_channels: int = 256,
                      scale_factors: Sequence[float] = SCALE_FACTORS, top_block: bool = False,
                      norm: bool = False, prune: bool = True,
                      norm_eps: float = 1e-6) -> SimpleFeaturePyramid:
        """A pyramid over ``model``'s last map: width and stride read off its
        ``feature_info``; with ``prune`` the head (and the final norm unless ``norm``) is
        removed from the model first, so no parameter goes unused.

        Args:
            model: a vitzoo model, or a ``features_only`` model (its last output is used).
            out_channels, scale_factors, top_block, norm_eps: as the constructor's.
            norm: apply the model's final norm to the map.
            prune: drop what the map does not need (``prune_intermediate_layers``).
        """
        # a list of dicts, or a FeatureInfo (vitzoo's or timm's: indexable, with get_dicts)
        info = cast(Sequence[Mapping[str, Any]], model.feature_info)
        last = info.get_dicts()[-1] if hasattr(info, "get_dicts") else info[-1]
        if prune and hasattr(model, "prune_intermediate_layers"):
            prune_layers = cast(Callable[..., object], model.prune_intermediate_layers)
            prune_layers(1, prune_norm=not norm)
        return cls(last["num_chs"], out_channels=out_channels, scale_factors=scale_factors,
                   in_stride=last["reduction"], top_block=top_block, norm_eps=norm_eps,
                   backbone=model, backbone_norm=norm)

    @torch.no_grad()
    def init_weights(self, mode: str = "timm") -> None:
        """Re-initialise the pyramid (never the backbone): ``"timm"`` PyTorch's default conv
        init, ``"jax"`` LeCun-normal kernels and zero biases; norms to ones and zeros."""
        check_init_mode(mode)
        for module in self.stages.modules():
            if isinstance(module, nn.LayerNorm):
                module.reset_parameters()
            elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                if mode == "timm":
                    module.reset_parameters()
                    continue
                # a transposed kernel is (in, out, kh, kw): its fan-in is in * kh * kw
                kernel = module.weight.transpose(0, 1) if isinstance(
                    module, nn.ConvTranspose2d) else module.weight
                lecun_normal_(kernel)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _backbone_map(self, images: torch.Tensor) -> torch.Tensor:
        backbone = self.backbone
        assert backbone is not None  # forward calls this only with a backbone
        # TorchScript compiles this (a backbone may export forward_intermediates), so no cast(),
        # and a "type: ignore" must end its line. The ignore: nn.Module's stub types every
        # attribute it does not know Tensor | Module, this method too.
        if hasattr(backbone, "forward_intermediates"):
            out: torch.Tensor = backbone.forward_intermediates(  # type: ignore[operator]
                images, indices=1, norm=self.backbone_norm, output_fmt="NCHW",
                intermediates_only=True)[-1]
            return out
        out = backbone(images)[-1]  # a features_only model
        return out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The pyramid of a ``(B, in_channels, H, W)`` map, or of images when built with a
        backbone: ``(B, out_channels, H * scale, W * scale)`` per scale, finest first."""
        if self.backbone is not None:
            x = self._backbone_map(x)  # (B, D, gh, gw)
        outputs = [stage(x) for stage in self.stages]
        if self.top_block:
            outputs.append(F.max_pool2d(outputs[-1], kernel_size=1, stride=2))
        return outputs


def _check(in_channels: int, out_channels: int, scale_factors: Sequence[float],
           in_stride: int) -> None:
    if not scale_factors:
        raise ConfigError("scale_factors is empty: name at least one of 4.0, 2.0, 1.0, 0.5")
    for scale in scale_factors:
        if float(scale) not in SCALE_FACTORS:
            raise ConfigError(f"scale factor {scale!r} is not one of ViTDet's "
                              f"{', '.join(map(str, SCALE_FACTORS))}")
        if in_stride / scale != int(in_stride / scale):
            raise ConfigError(f"stride {in_stride} / scale {scale} is not a whole number of "
                              "pixels")
    if list(scale_factors) != sorted(scale_factors, reverse=True):
        raise ConfigError(f"scale_factors must go from fine to coarse, got {scale_factors!r}")
    divisor = 4 if 4.0 in scale_factors else 2 if 2.0 in scale_factors else 1
    if in_channels % divisor:
        raise ConfigError(f"in_channels={in_channels} is not divisible by {divisor} (the "
                          f"{divisor}x branch divides the width by {divisor})")
    if in_channels < 1 or out_channels < 1:
        raise ConfigError(f"in_channels and out_channels must be positive, got {in_channels} "
                          f"and {out_channels}")
