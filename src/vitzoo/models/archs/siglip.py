"""SigLIP and SigLIP 2 image towers (Zhai et al., 2023; Tschannen et al., 2025; big_vision),
with timm's names, and open_clip's and Hugging Face's model names as aliases of the weights
(``ViT-SO400M-14-SigLIP-384``, ``siglip_so400m_patch14_384`` ...).

A SigLIP tower has no class token: a learned position table for the patches, the final norm,
then big_vision's MAP head (``attn_pool``), or the mean of the tokens in the ``*_gap_*``
towers PaliGemma uses. Every tower computes the tanh-approximated GELU of the original JAX code
(timm builds some with the exact GELU; docs/models.md lists where).
"""

from __future__ import annotations

from ...config import ViTConfig
from .arch import Arch

__all__ = ["ARCHS", "TIMM_ERF_GELU"]

# big_vision's variants (vit.decode_variant): width, depth, heads, MLP width
_SIZES: dict[str, tuple[int, int, int, int]] = {
    "base": (768, 12, 12, 3072),
    "large": (1024, 24, 16, 4096),
    "so400m": (1152, 27, 16, 4304),
    "giantopt": (1536, 40, 16, 6144),
}
_TOWERS: tuple[tuple[str, int, int], ...] = (  # (size, patch, image)
    ("base", 32, 256), ("base", 16, 224), ("base", 16, 256), ("base", 16, 384),
    ("base", 16, 512), ("large", 16, 256), ("large", 16, 384), ("large", 16, 512),
    ("so400m", 16, 256), ("so400m", 16, 384), ("so400m", 16, 512), ("so400m", 14, 224),
    ("so400m", 14, 378), ("so400m", 14, 384), ("giantopt", 16, 256), ("giantopt", 16, 384),
)
_GAP_ONLY: tuple[tuple[str, int, int], ...] = (("so400m", 14, 448), ("so400m", 14, 896))
# Aliases of weight sets: name -> (architecture, tag)
WEIGHT_ALIASES: dict[str, tuple[str, str]] = {
    **{f"ViT-B-16-SigLIP{s}": (f"vit_base_patch16_siglip_{i}", "webli")
       for s, i in (("", 224), ("-256", 256), ("-384", 384), ("-512", 512))},
    "ViT-B-16-SigLIP-i18n-256": ("vit_base_patch16_siglip_256", "webli_i18n"),
    **{f"ViT-L-16-SigLIP-{i}": (f"vit_large_patch16_siglip_{i}", "webli") for i in (256, 384)},
    "ViT-SO400M-14-SigLIP": ("vit_so400m_patch14_siglip_224", "webli"),
    "ViT-SO400M-14-SigLIP-384": ("vit_so400m_patch14_siglip_384", "webli"),
    **{f"ViT-B-16-SigLIP2{s}": (f"vit_base_patch16_siglip_{i}", "v2_webli")
       for s, i in (("", 224), ("-256", 256), ("-384", 384), ("-512", 512))},
    "ViT-B-32-SigLIP2-256": ("vit_base_patch32_siglip_256", "v2_webli"),
    **{f"ViT-L-16-SigLIP2-{i}": (f"vit_large_patch16_siglip_{i}", "v2_webli")
       for i in (256, 384, 512)},
    "ViT-SO400M-14-SigLIP2": ("vit_so400m_patch14_siglip_224", "v2_webli"),
    "ViT-SO400M-14-SigLIP2-378": ("vit_so400m_patch14_siglip_378", "v2_webli"),
    **{f"ViT-SO400M-16-SigLIP2-{i}": (f"vit_so400m_patch16_siglip_{i}", "v2_webli")
       for i in (256, 384, 512)},
    **{f"ViT-gopt-16-SigLIP2-{i}": (f"vit_giantopt_patch16_siglip_{i}", "v2_webli")
       for i in (256, 384)},
    # Hugging Face's google/siglip-* and google/siglip2-* names
    **{f"siglip_base_patch16_{i}": (f"vit_base_patch16_siglip_{i}", "webli")
       for i in (224, 256, 384, 512)},
    "siglip_base_patch16_256_multilingual": ("vit_base_patch16_siglip_256", "webli_i18n"),
    **{f"siglip_large_patch16_{i}": (f"vit_large_patch16_siglip_{i}", "webli")
       for i in (256, 384)},
    **{f"siglip_so400m_patch14_{i}": (f"vit_so400m_patch14_siglip_{i}", "webli")
       for i in (224, 384)},
    **{f"siglip2_base_patch16_{i}": (f"vit_base_patch16_siglip_{i}", "v2_webli")
       for i in (224, 256, 384, 512)},
    "siglip2_base_patch32_256": ("vit_base_patch32_siglip_256", "v2_webli"),
    **{f"siglip2_large_patch16_{i}": (f"vit_large_patch16_siglip_{i}", "v2_webli")
       for i in (256, 384, 512)},
    "siglip2_so400m_patch14_224": ("vit_so400m_patch14_siglip_224", "v2_webli"),
    **{f"siglip2_so400m_patch16_{i}": (f"vit_so400m_patch16_siglip_{i}", "v2_webli")
       for i in (256, 384, 512)},
    **{f"siglip2_giant_opt_patch16_{i}": (f"vit_giantopt_patch16_siglip_{i}", "v2_webli")
       for i in (256, 384)},
}
TIMM_ERF_GELU = frozenset(
    [f"vit_base_patch16_siglip{gap}_{i}" for gap in ("", "_gap") for i in (224, 256, 384, 512)]
    + [f"vit_large_patch16_siglip{gap}_{i}" for gap in ("", "_gap") for i in (256, 384)]
    + [f"vit_so400m_patch14_siglip{gap}_{i}" for gap in ("", "_gap") for i in (224, 378, 384)]
    + ["vit_so400m_patch14_siglip_gap_448", "vit_so400m_patch14_siglip_gap_896"])
"""Towers timm builds with the exact (erf) GELU instead of the original's tanh form."""


def tower_config(size: str, patch: int, img: int, pool: str) -> ViTConfig:
    """A SigLIP image tower: no class token, MAP (``"map"``) or mean (``"avg"``) pooling,
    tanh GELU, LayerNorm eps 1e-6, no head."""
    width, depth, heads, mlp = _SIZES[size]
    return ViTConfig(
        img_size=(img, img), patch_size=(patch, patch), embed_dim=width, depth=depth,
        num_heads=heads, mlp_dim=mlp, num_classes=0, class_token=False, global_pool=pool,
        gelu_approximate="tanh", pos_embed_resample="scipy")


def _name(size: str, patch: int, img: int, gap: bool) -> str:
    return f"vit_{size}_patch{patch}_siglip{'_gap' if gap else ''}_{img}"


def _arch(size: str, patch: int, img: int, gap: bool) -> Arch:
    name = _name(size, patch, img, gap)
    pool = "mean of the tokens" if gap else "MAP head"
    return Arch(name, tower_config(size, patch, img, "avg" if gap else "map"),
                f"SigLIP {size} image tower, patch {patch}, {pool}, at {img}x{img} "
                "(Zhai et al., 2023).",
                tag_aliases=tuple((alias, tag) for alias, (arch, tag) in WEIGHT_ALIASES.items()
                                  if arch == name))


ARCHS: tuple[Arch, ...] = (
    *(_arch(size, patch, img, False) for size, patch, img in _TOWERS),
    *(_arch(size, patch, img, True) for size, patch, img in (*_TOWERS, *_GAP_ONLY)),
)
