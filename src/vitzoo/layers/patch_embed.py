"""Patch embedding: split the image into non-overlapping patches and project each one.

Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021), eq. 1.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ImageSizeError
from .helpers import to_2tuple
from .weight_init import lecun_normal_

__all__ = ["PatchEmbed", "check_image"]


def check_image(x: torch.Tensor, img_size: tuple[int, int], in_chans: int) -> None:
    """Raise :class:`ImageSizeError` unless ``x`` is ``(B, in_chans, *img_size)``."""
    if x.ndim != 4:
        raise ImageSizeError(
            f"expected a (batch, channels, height, width) tensor, got shape {tuple(x.shape)}"
        )
    _, c, h, w = x.shape
    if c != in_chans:
        raise ImageSizeError(
            f"the model takes {in_chans}-channel images, got {c} channels; "
            f"create the model with in_chans={c} or convert the images"
        )
    if (h, w) != img_size:
        raise ImageSizeError(
            f"the model takes {img_size[0]}x{img_size[1]} images, got {h}x{w}; "
            f"resize the input or create the model with img_size=({h}, {w})"
        )


class PatchEmbed(nn.Module):
    """A convolution with kernel = stride = patch: ``(B, C, H, W) -> (B, N, D)``.

    The model's position table is sized for one grid, so the input must have exactly
    ``img_size``; rows and columns of ``img_size`` that the patch does not cover are dropped
    (a VALID convolution, as in Google's code).

    Args:
        img_size: input height and width (int or pair).
        patch_size: patch height and width (int or pair).
        in_chans: input channels.
        embed_dim: output token width D.
        bias: whether the projection has a bias.
    """

    def __init__(self, *, img_size: int | tuple[int, int] = 224,
                 patch_size: int | tuple[int, int] = 16, in_chans: int = 3,
                 embed_dim: int = 768, bias: bool = True) -> None:
        super().__init__()
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        if any(i < p for i, p in zip(self.img_size, self.patch_size, strict=True)):
            raise ImageSizeError(
                f"img_size={self.img_size} is smaller than patch_size={self.patch_size}"
            )
        self.grid_size = (self.img_size[0] // self.patch_size[0],
                          self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.in_chans = in_chans
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size,
                              stride=self.patch_size, bias=bias)

    @torch.no_grad()
    def init_weights(self, mode: str) -> None:
        """``"timm"``: PyTorch's default conv init; ``"jax"``: LeCun-normal kernel, zero bias."""
        init_conv_(self.proj, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, self.img_size, self.in_chans)
        x = self.proj(x)  # (B, D, gh, gw)
        return x.flatten(2).transpose(1, 2)  # (B, N, D), row-major over the grid


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
