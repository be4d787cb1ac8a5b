"""Patch embedding: split the image into non-overlapping patches and project each one.

Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021), eq. 1. Changing the patch
size of trained weights follows FlexiViT: Beyer et al., "FlexiViT: One Model for All Patch
Sizes" (CVPR 2023), the pseudo-inverse resize of §3.4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ImageInputError, ImageSizeError
from .helpers import patch_grid, to_2tuple
from .weight_init import lecun_normal_

__all__ = ["PatchEmbed", "check_image", "resample_patch_kernel"]


def check_image(x: torch.Tensor, img_size: tuple[int, int], in_chans: int,
                patch_size: tuple[int, int] = (1, 1), dynamic: bool = False,
                pad: bool = False, weight: torch.Tensor | None = None) -> None:
    """Raise unless ``x`` is an image batch the model takes.

    A fixed-size model takes ``(B, in_chans, *img_size)``; a dynamic one (``dynamic``) any
    height and width of at least one patch that the patch divides, or any at all with ``pad``.
    The image must be floating-point and, when ``weight`` (the first layer's) is given, on its
    device and of its dtype (any floating type under ``torch.autocast``; not checked when
    scripted). Scriptable, and a single node under ``torch.fx`` tracing; a few comparisons of
    metadata, no computation.

    Raises:
        ImageSizeError: the rank, channels or size is wrong.
        ImageInputError: not a tensor, an integer / bool image, or one on another device or
            of another floating type than ``weight``.
    """
    if not isinstance(x, torch.Tensor):  # (always one when scripted)
        raise ImageInputError(
            f"the model takes a (batch, channels, height, width) torch.Tensor, got a "
            f"{type(x).__name__}: make one with vitzoo.create_transform(...)(image)[None] or "
            "torch.as_tensor"
        )
    if x.dim() != 4:
        raise ImageSizeError(
            f"expected a (batch, channels, height, width) tensor, got {x.dim()} dimensions"
        )
    if not x.is_floating_point():
        # TorchScript formats a dtype as a number: name it only in eager mode
        kind = "an integer, bool or complex" if torch.jit.is_scripting() else f"a {x.dtype}"
        raise ImageInputError(
            f"the model takes floating-point images, got {kind} tensor: convert it to float "
            "and normalise it as the weights expect, e.g. with "
            "vitzoo.create_transform(vitzoo.resolve_data_config(model)) on the PIL image, or "
            "(x.float() / 255 - mean) / std"
        )
    if weight is not None and x.device != weight.device:
        raise ImageInputError(
            f"the input is on {x.device} and the model's weights on {weight.device}: move one "
            f"of them, e.g. x.to('{weight.device}') or model.to('{x.device}')"
        )
    if not torch.jit.is_scripting() and weight is not None and x.dtype != weight.dtype:
        _check_float_dtype(x, weight)
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    if c != in_chans:
        raise ImageSizeError(
            f"the model takes {in_chans}-channel images, got {c} channels; "
            f"create the model with in_chans={c} or convert the images"
        )
    if not dynamic:
        if h != img_size[0] or w != img_size[1]:
            raise ImageSizeError(
                f"the model takes {img_size[0]}x{img_size[1]} images, got {h}x{w}; resize the "
                f"input, create the model with img_size=({h}, {w}) or dynamic_img_size=True"
            )
    elif h < patch_size[0] or w < patch_size[1]:
        raise ImageSizeError(
            f"a {h}x{w} image is smaller than one {patch_size[0]}x{patch_size[1]} patch"
        )
    elif not pad and (h % patch_size[0] != 0 or w % patch_size[1] != 0):
        raise ImageSizeError(
            f"a {h}x{w} image is not a whole number of {patch_size[0]}x{patch_size[1]} "
            "patches; resize it or create the model with dynamic_img_pad=True"
        )


def _check_float_dtype(x: torch.Tensor, weight: torch.Tensor) -> None:
    """Another floating type than the weights' is fine under autocast, which casts both."""
    try:
        autocast = torch.is_autocast_enabled(x.device.type)
    except TypeError:  # torch < 2.4: no device argument
        autocast = torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()
    if not autocast:
        raise ImageInputError(
            f"the input is {x.dtype} and the model's weights {weight.dtype}: convert one of "
            f"them (x.to({weight.dtype}) or model.to({x.dtype})), or run under torch.autocast"
        )


torch.fx.wrap("check_image")


def pad_to_patches(x: torch.Tensor, patch_size: tuple[int, int]) -> torch.Tensor:
    """Zero-pad ``(B, C, H, W)`` at the bottom and right to whole patches."""
    pad_h = (patch_size[0] - x.shape[-2] % patch_size[0]) % patch_size[0]
    pad_w = (patch_size[1] - x.shape[-1] % patch_size[1]) % patch_size[1]
    return F.pad(x, (0, pad_w, 0, pad_h))


def resample_patch_kernel(weight: torch.Tensor, new_size: tuple[int, int], *,
                          mode: str = "bicubic", antialias: bool = True) -> torch.Tensor:
    """A ``(D, C, ph, pw)`` patch kernel for another patch size, by FlexiViT's PI-resize.

    With ``R`` the matrix that resizes a patch (``F.interpolate`` of each basis patch, the
    resize the images would get), the new kernel solves ``R^T w_new = w_old`` in the least-
    squares sense: ``w_new = pinv(R^T) w_old``, so a patch resized with ``R`` gives the same
    token as the original patch did. Computed in float64, returned in the kernel's dtype.
    """
    old = (int(weight.shape[-2]), int(weight.shape[-1]))
    new = to_2tuple(new_size)
    if old == new:
        return weight
    n_old = old[0] * old[1]
    basis = torch.eye(n_old, dtype=torch.float32).reshape(n_old, 1, *old)  # one patch each
    resized = F.interpolate(basis, size=new, mode=mode, antialias=antialias)
    resize = resized.reshape(n_old, -1).T.double()  # R: (n_new, n_old)
    solve = torch.linalg.pinv(resize.T)  # (n_new, n_old)
    flat = weight.detach().double().reshape(-1, n_old)  # (D * C, n_old)
    out: torch.Tensor = (flat @ solve.T).reshape(*weight.shape[:2], *new)  # (D, C, nh, nw)
    return out.to(device=weight.device, dtype=weight.dtype)


class PatchEmbed(nn.Module):
    """A convolution with kernel = stride = patch: ``(B, C, H, W) -> (B, N, D)``.

    A fixed-size embedding takes exactly ``img_size``; rows and columns the patch does not
    cover are dropped (a VALID convolution, as in Google's code). With ``dynamic_img_size`` it
    takes any size and returns the token grid ``(B, gh, gw, D)`` for the model to position.

    Args:
        img_size: native input height and width (int or pair).
        patch_size: patch height and width (int or pair).
        in_chans: input channels.
        embed_dim: output token width D.
        bias: whether the projection has a bias.
        dynamic_img_size: accept any input size and return ``(B, gh, gw, D)``.
        dynamic_img_pad: zero-pad inputs to whole patches (the grid rounds up).
    """

    __constants__ = ["dynamic_img_size", "dynamic_img_pad"]

    def __init__(self, *, img_size: int | tuple[int, int] = 224,
                 patch_size: int | tuple[int, int] = 16, in_chans: int = 3,
                 embed_dim: int = 768, bias: bool = True, dynamic_img_size: bool = False,
                 dynamic_img_pad: bool = False) -> None:
        super().__init__()
        self.dynamic_img_size = dynamic_img_size
        self.dynamic_img_pad = dynamic_img_pad
        self.in_chans = in_chans
        self.patch_size = to_2tuple(patch_size)
        self._set_grid(to_2tuple(img_size))
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size,
                              stride=self.patch_size, bias=bias)

    def _set_grid(self, img_size: tuple[int, int]) -> None:
        if any(i < p for i, p in zip(img_size, self.patch_size, strict=True)):
            raise ImageSizeError(f"img_size={img_size} is smaller than "
                                 f"patch_size={self.patch_size}")
        self.img_size = img_size
        self.grid_size = self.dynamic_feat_size(img_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]

    @torch.no_grad()
    def init_weights(self, mode: str) -> None:
        """``"timm"``: PyTorch's default conv init; ``"jax"``: LeCun-normal kernel, zero bias."""
        init_conv_(self.proj, mode)

    def feat_ratio(self) -> int:
        """The stride of the token grid in input pixels (timm's name)."""
        return max(self.patch_size)

    def dynamic_feat_size(self, img_size: tuple[int, int]) -> tuple[int, int]:
        """The token grid ``(gh, gw)`` of an ``img_size`` input."""
        return patch_grid(img_size, self.patch_size, self.dynamic_img_pad)

    def set_input_size(self, img_size: int | tuple[int, int] | None = None,
                       patch_size: int | tuple[int, int] | None = None) -> None:
        """Change the native input size and/or the patch size (the kernel is PI-resized)."""
        if patch_size is not None and to_2tuple(patch_size) != self.patch_size:
            self.proj = resized_projection(self.proj, to_2tuple(patch_size))
            self.patch_size = to_2tuple(patch_size)
        self._set_grid(to_2tuple(img_size) if img_size is not None else self.img_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, self.img_size, self.in_chans, self.patch_size, self.dynamic_img_size,
                    self.dynamic_img_pad, self.proj.weight)
        if self.dynamic_img_pad:
            x = pad_to_patches(x, self.patch_size)
        x = self.proj(x)  # (B, D, gh, gw)
        if self.dynamic_img_size:
            return x.permute(0, 2, 3, 1)  # (B, gh, gw, D)
        return x.flatten(2).transpose(1, 2)  # (B, N, D), row-major over the grid


def resized_projection(proj: nn.Conv2d, patch_size: tuple[int, int]) -> nn.Conv2d:
    """A copy of a patch projection for another patch size, its kernel PI-resized."""
    new = nn.Conv2d(proj.in_channels, proj.out_channels, kernel_size=patch_size,
                    stride=patch_size, bias=proj.bias is not None,
                    device=proj.weight.device, dtype=proj.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(resample_patch_kernel(proj.weight, patch_size))
        if proj.bias is not None and new.bias is not None:
            new.bias.copy_(proj.bias)
    new.requires_grad_(proj.weight.requires_grad)
    return new


@torch.no_grad()
def init_conv_(conv: nn.Conv2d, mode: str) -> None:
    """A patch projection's init: LeCun-normal kernel and zero bias for ``"jax"`` (flax's
    Conv default), PyTorch's own ``reset_parameters`` for ``"timm"``."""
    if mode == "jax":
        lecun_normal_(conv.weight)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    else:
        conv.reset_parameters()
