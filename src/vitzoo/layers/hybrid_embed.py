"""Patch embedding on top of a CNN's feature map: the "hybrid" input of the ViT paper (§3.1)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ImageSizeError
from .helpers import to_2tuple
from .patch_embed import check_image, init_conv_

__all__ = ["HybridEmbed"]


class HybridEmbed(nn.Module):
    """``backbone`` then a patch projection of its feature map: ``(B, C, H, W) -> (B, N, D)``.

    Args:
        backbone: a module mapping images to ``(B, feature_dim, *feature_size)``.
        img_size: input height and width.
        feature_size: the backbone's output height and width for that input.
        feature_dim: the backbone's output channels.
        patch_size: patch size on the feature map (1 for the R50 and R26 hybrids).
        in_chans: input channels.
        embed_dim: token width D.
    """

    def __init__(self, backbone: nn.Module, *, img_size: int | tuple[int, int],
                 feature_size: tuple[int, int], feature_dim: int,
                 patch_size: int | tuple[int, int] = 1, in_chans: int = 3,
                 embed_dim: int = 768) -> None:
        super().__init__()
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        if any(f < p for f, p in zip(feature_size, self.patch_size, strict=True)):
            raise ImageSizeError(
                f"the backbone's {feature_size[0]}x{feature_size[1]} feature map is smaller "
                f"than patch_size={self.patch_size}; use a larger img_size"
            )
        self.grid_size = (feature_size[0] // self.patch_size[0],
                          feature_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.in_chans = in_chans
        self.backbone = backbone
        self.proj = nn.Conv2d(feature_dim, embed_dim, kernel_size=self.patch_size,
                              stride=self.patch_size)

    @torch.no_grad()
    def init_weights(self, mode: str) -> None:
        """The projection (the backbone's layers initialise themselves)."""
        init_conv_(self.proj, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, self.img_size, self.in_chans)
        x = self.proj(self.backbone(x))  # (B, D, gh, gw)
        return x.flatten(2).transpose(1, 2)  # (B, N, D), row-major over the grid
