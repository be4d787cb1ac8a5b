"""CLIP image towers (Radford et al., 2021; open_clip, Cherti et al., 2023; TinyCLIP, Wu et
al., 2023), with timm's names and open_clip's model names (``ViT-B-32``, ``ViT-L-14-336``,
``ViT-H-14-quickgelu`` ...) as aliases.

CLIP's tower: a bias-free patch convolution, a norm before the blocks (``ln_pre`` ->
``norm_pre``), LayerNorm eps 1e-5, the final norm on the class token, and the projection to
the joint embedding as the head (``proj`` -> ``head.weight``, with timm's zero bias). The
``*_quickgelu_*`` towers compute QuickGELU, as OpenAI's weights need.
"""

from __future__ import annotations

from ...config import ViTConfig
from .arch import Arch

__all__ = ["ARCHS"]

# (name, width, depth, heads, MLP width, patch, image, QuickGELU, classes of the default tag,
#  open_clip names)
_TABLE: tuple[tuple[str, int, int, int, int, int, int, bool, int, tuple[str, ...]], ...] = (
    ("vit_xsmall_patch16_clip_224", 256, 10, 4, 1024, 16, 224, False, 512, ()),
    ("vit_medium_patch32_clip_224", 512, 12, 8, 2048, 32, 224, False, 512, ()),
    ("vit_medium_patch16_clip_224", 512, 12, 8, 2048, 16, 224, False, 512, ()),
    ("vit_betwixt_patch32_clip_224", 640, 12, 10, 2560, 32, 224, False, 512, ()),
    ("vit_base_patch32_clip_224", 768, 12, 12, 3072, 32, 224, False, 1000, ("ViT-B-32",)),
    ("vit_base_patch32_clip_quickgelu_224", 768, 12, 12, 3072, 32, 224, True, 512,
     ("ViT-B-32-quickgelu",)),
    ("vit_base_patch32_clip_256", 768, 12, 12, 3072, 32, 256, False, 512, ("ViT-B-32-256",)),
    ("vit_base_patch32_clip_384", 768, 12, 12, 3072, 32, 384, False, 1000, ()),
    ("vit_base_patch32_clip_448", 768, 12, 12, 3072, 32, 448, False, 1000, ()),
    ("vit_base_patch16_clip_224", 768, 12, 12, 3072, 16, 224, False, 1000, ("ViT-B-16",)),
    ("vit_base_patch16_clip_quickgelu_224", 768, 12, 12, 3072, 16, 224, True, 512,
     ("ViT-B-16-quickgelu",)),
    ("vit_base_patch16_clip_384", 768, 12, 12, 3072, 16, 384, False, 1000, ()),
    ("vit_base_patch16_plus_clip_240", 896, 12, 14, 3584, 16, 240, False, 640,
     ("ViT-B-16-plus-240",)),
    ("vit_large_patch14_clip_224", 1024, 24, 16, 4096, 14, 224, False, 1000, ("ViT-L-14",)),
    ("vit_large_patch14_clip_quickgelu_224", 1024, 24, 16, 4096, 14, 224, True, 768,
     ("ViT-L-14-quickgelu",)),
    ("vit_large_patch14_clip_336", 1024, 24, 16, 4096, 14, 336, False, 1000, ("ViT-L-14-336",)),
    ("vit_large_patch14_clip_quickgelu_336", 1024, 24, 16, 4096, 14, 336, True, 768,
     ("ViT-L-14-336-quickgelu",)),
    ("vit_huge_patch14_clip_224", 1280, 32, 16, 5120, 14, 224, False, 1000, ("ViT-H-14",)),
    ("vit_huge_patch14_clip_quickgelu_224", 1280, 32, 16, 5120, 14, 224, True, 1024,
     ("ViT-H-14-quickgelu",)),
    ("vit_huge_patch14_clip_336", 1280, 32, 16, 5120, 14, 336, False, 1000, ()),
    ("vit_huge_patch14_clip_378", 1280, 32, 16, 5120, 14, 378, False, 1024, ("ViT-H-14-378",)),
    ("vit_huge_patch14_clip_quickgelu_378", 1280, 32, 16, 5120, 14, 378, True, 1024,
     ("ViT-H-14-378-quickgelu",)),
    ("vit_giant_patch14_clip_224", 1408, 40, 16, 6144, 14, 224, False, 1024, ("ViT-g-14",)),
    ("vit_gigantic_patch14_clip_224", 1664, 48, 16, 8192, 14, 224, False, 1280,
     ("ViT-bigG-14",)),
    ("vit_gigantic_patch14_clip_quickgelu_224", 1664, 48, 16, 8192, 14, 224, True, 1280,
     ("ViT-bigG-14-quickgelu",)),
    ("vit_gigantic_patch14_clip_378", 1664, 48, 16, 8192, 14, 378, False, 1280,
     ("ViT-bigG-14-378",)),
)


def tower_config(width: int, depth: int, heads: int, mlp: int, patch: int, img: int,
                 quick_gelu: bool, num_classes: int) -> ViTConfig:
    """A CLIP image tower as a ViTConfig (also what the open_clip adapter builds)."""
    return ViTConfig(
        img_size=(img, img), patch_size=(patch, patch), embed_dim=width, depth=depth,
        num_heads=heads, mlp_dim=mlp, num_classes=num_classes, pre_norm=True, patch_bias=False,
        norm_eps=1e-5, act_layer="quick_gelu" if quick_gelu else "gelu")


def _arch(name: str, width: int, depth: int, heads: int, mlp: int, patch: int, img: int,
          quick_gelu: bool, classes: int, aliases: tuple[str, ...]) -> Arch:
    act = ", QuickGELU" if quick_gelu else ""
    return Arch(name, tower_config(width, depth, heads, mlp, patch, img, quick_gelu, classes),
                f"CLIP image tower, width {width}, {depth} blocks, patch {patch}{act}, at "
                f"{img}x{img} (Radford et al., 2021).", aliases)


ARCHS: tuple[Arch, ...] = tuple(_arch(*row) for row in _TABLE)
