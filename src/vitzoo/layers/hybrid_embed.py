"""Patch embedding on top of a CNN's feature map: the "hybrid" input of the ViT paper (§3.1)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ImageSizeError
from .helpers import patch_grid, to_2tuple
from .patch_embed import check_image, init_conv_, pad_to_patches, resized_projection

__all__ = ["HybridEmbed"]

torch.fx.wrap("check_image")


class HybridEmbed(nn.Module):
    """``backbone`` then a patch projection of its feature map: ``(B, C, H, W) -> (B, N, D)``.

    With ``dynamic_img_size`` it takes any input size and returns the token grid
    ``(B, gh, gw, D)``; the grid is read off the backbone's output.

    Args:
        backbone: a module mapping images to ``(B, feature_dim, *feature_size)``.
        img_size: input height and width.
        feature_size: the backbone's output height and width for that input.
        feature_dim: the backbone's output channels.
        patch_size: patch size on the feature map (1 for the R50 and R26 hybrids).
        in_chans: input channels.
        embed_dim: token width D.
        dynamic_img_size: accept any input size and return ``(B, gh, gw, D)``.
        dynamic_img_pad: zero-pad the feature map to whole patches (the grid rounds up).
    """

    __constants__ = ["dynamic_img_size", "dynamic_img_pad"]

    def __init__(self, backbone: nn.Module, *, img_size: int | tuple[int, int],
                 feature_size: tuple[int, int], feature_dim: int,
                 patch_size: int | tuple[int, int] = 1, in_chans: int = 3,
                 embed_dim: int = 768, dynamic_img_size: bool = False,
                 dynamic_img_pad: bool = False) -> None:
        super().__init__()
        self.dynamic_img_size = dynamic_img_size
        self.dynamic_img_pad = dynamic_img_pad
        self.patch_size = to_2tuple(patch_size)
        self.in_chans = in_chans
        self._set_grid(to_2tuple(img_size), feature_size)
        self.backbone = backbone
        self.proj = nn.Conv2d(feature_dim, embed_dim, kernel_size=self.patch_size,
                              stride=self.patch_size)

    def _set_grid(self, img_size: tuple[int, int], feature_size: tuple[int, int]) -> None:
        if any(f < p for f, p in zip(feature_size, self.patch_size, strict=True)):
            raise ImageSizeError(
                f"the backbone's {feature_size[0]}x{feature_size[1]} feature map is smaller "
                f"than patch_size={self.patch_size}; use a larger img_size"
            )
        self.img_size = img_size
        self.feature_size = feature_size
        self.grid_size = patch_grid(feature_size, self.patch_size, self.dynamic_img_pad)
        self.num_patches = self.grid_size[0] * self.grid_size[1]

    def feat_ratio(self) -> int:
        """The stride of the token grid in input pixels (timm's name)."""
        return max(i // g for i, g in zip(self.img_size, self.grid_size, strict=True))

    def set_input_size(self, img_size: tuple[int, int], feature_size: tuple[int, int],
                       patch_size: int | tuple[int, int] | None = None) -> None:
        """Change the native input size (``feature_size``: the backbone's map for it) and
        optionally the patch size on the feature map (the kernel is PI-resized)."""
        if patch_size is not None and to_2tuple(patch_size) != self.patch_size:
            self.proj = resized_projection(self.proj, to_2tuple(patch_size))
            self.patch_size = to_2tuple(patch_size)
        self._set_grid(to_2tuple(img_size), feature_size)

    @torch.no_grad()
    def init_weights(self, mode: str) -> None:
        """The projection (the backbone's layers initialise themselves)."""
        init_conv_(self.proj, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Any size reaches the backbone ("SAME" padding); the map is checked against the patch.
        check_image(x, self.img_size, self.in_chans, (1, 1), self.dynamic_img_size, True,
                    self.proj.weight)
        x = self.backbone(x)  # (B, F, fh, fw)
        if self.dynamic_img_size:
            check_image(x, self.feature_size, x.shape[1], self.patch_size, True,
                        self.dynamic_img_pad)
        if self.dynamic_img_pad:
            x = pad_to_patches(x, self.patch_size)
        x = self.proj(x)  # (B, D, gh, gw)
        if self.dynamic_img_size:
            return x.permute(0, 2, 3, 1)  # (B, gh, gw, D)
        return x.flatten(2).transpose(1, 2)  # (B, N, D), row-major over the grid
