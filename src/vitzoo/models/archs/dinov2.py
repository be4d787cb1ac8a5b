"""DINOv2 (Oquab et al., 2024) and DINOv2 with registers (Darcet et al., 2024), with timm's
names and the original hub names (``dinov2_vits14``, ``dinov2_vitb14_reg`` ...) as aliases.

Every size takes 518x518 (a 37x37 grid of 14-pixel patches) natively and, as the original,
any multiple of the patch at run time (``dynamic_img_size``), resizing the position table with
DINOv2's own interpolation (the offset-0.1 scale factor of the plain models, the antialiased
output size of the register models). Registers get no position embedding: timm's layout folds
the class row of the original table into the class token (``no_embed_class``).
"""

from __future__ import annotations

from ...config import ViTConfig
from .arch import Arch

__all__ = ["ARCHS"]

# size -> (timm word, original letter, width, depth, heads, MLP width, SwiGLU)
_SIZES: dict[str, tuple[str, str, int, int, int, int, bool]] = {
    "S": ("small", "s", 384, 12, 6, 1536, False),
    "B": ("base", "b", 768, 12, 12, 3072, False),
    "L": ("large", "l", 1024, 24, 16, 4096, False),
    "g": ("giant", "g", 1536, 40, 24, 4096, True),  # SwiGLU: fc1 8192 = [gate; value]
}
# DINOv2's run-time rule for resizing the position table: plain models scale by
# (grid + 0.1) / 37 without antialias, register models resize to the grid with antialias.
PLAIN_RESAMPLE = "dinov2"
REG_RESAMPLE = "dinov2_reg"


def _cfg(size: str, registers: bool) -> ViTConfig:
    _, _, width, depth, heads, mlp, swiglu = _SIZES[size]
    return ViTConfig(
        img_size=(518, 518), patch_size=(14, 14), embed_dim=width, depth=depth, num_heads=heads,
        mlp_dim=mlp, mlp_layer="swiglu" if swiglu else "mlp", num_classes=0, init_values=1e-5,
        reg_tokens=4 if registers else 0, no_embed_class=registers, dynamic_img_size=True,
        pos_embed_resample=REG_RESAMPLE if registers else PLAIN_RESAMPLE,
        pos_embed_antialias=registers)


def _arch(size: str, registers: bool) -> Arch:
    word, letter = _SIZES[size][:2]
    reg = "_reg4" if registers else ""
    return Arch(
        f"vit_{word}_patch14{reg}_dinov2", _cfg(size, registers),
        f"DINOv2 ViT-{size}/14{' with 4 registers' if registers else ''}, self-supervised on "
        "LVD-142M (Oquab et al., 2024" + ("; Darcet et al., 2024)." if registers else ")."),
        (f"dinov2_vit{letter}14" + ("_reg" if registers else ""),))


ARCHS: tuple[Arch, ...] = tuple(_arch(size, registers) for registers in (False, True)
                                for size in _SIZES)
