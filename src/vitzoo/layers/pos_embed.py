"""Position embeddings: big_vision's fixed 2-D sin-cos table and resampling of learned ones.

Beyer et al., "Better plain ViT baselines for ImageNet-1k" (2022); big_vision's
``posemb_sincos_2d``. The resampling rules are those of the weights' origins: timm's bicubic,
Google's scipy zoom, and DINOv2's two (Oquab et al., "DINOv2", 2023; Darcet et al.,
"Vision Transformers Need Registers", ICLR 2024).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["RESAMPLE_MODES", "interpolate_pos_embed", "is_exporting", "resample_pos_embed",
           "sincos_2d_pos_embed", "sincos_pos_embed_for"]


def sincos_2d_pos_embed(grid_size: tuple[int, int], dim: int,
                        temperature: float = 10_000.0) -> torch.Tensor:
    """The ``(1, gh * gw, dim)`` float32 table for a ``(gh, gw)`` grid.

    Token ``t = r * gw + c`` gets ``[sin(c w), cos(c w), sin(r w), cos(r w)]`` with
    ``w_j = 1 / temperature ** (j / (dim / 4 - 1))``: the column (x) half comes first and the
    exponent runs from 0 to 1 inclusive, both as in big_vision.

    Args:
        grid_size: ``(gh, gw)``.
        dim: embedding width, a multiple of 4 and at least 8.
        temperature: base of the frequencies.
    """
    if dim % 4 or dim < 8:
        raise ValueError(f"sin-cos position embeddings need dim divisible by 4 and >= 8, got {dim}")
    gh, gw = grid_size[0], grid_size[1]
    quarter = dim // 4
    omega = torch.arange(quarter, dtype=torch.float32) / (quarter - 1)
    omega = 1.0 / temperature ** omega  # (D/4,)
    rows, cols = torch.meshgrid(torch.arange(gh, dtype=torch.float32),
                                torch.arange(gw, dtype=torch.float32), indexing="ij")
    x = cols.reshape(-1, 1) * omega  # (N, D/4): column coordinate
    y = rows.reshape(-1, 1) * omega  # (N, D/4): row coordinate
    table = torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)  # (N, D)
    return table.unsqueeze(0)  # (1, N, D)


RESAMPLE_MODES = ("scipy", "bilinear", "bicubic", "dinov2", "dinov2_reg")

# DINOv2's "historical kludge" (dino issue #8): its plain models ask F.interpolate for the scale
# factor (g + 0.1) / M, so the output has g rows but is sampled with the step M / (g + 0.1).
DINOV2_OFFSET = 0.1


def _resize_grid(table: torch.Tensor, new_grid: list[int], old_grid: list[int], mode: str,
                 antialias: bool, offset: float = DINOV2_OFFSET) -> torch.Tensor:
    """``F.interpolate`` of a float ``(1, D, oh, ow)`` grid to ``new_grid`` by a torch rule.

    ``"dinov2"``: bicubic with DINOv2's scale factors and no antialias, which is
    ``F.interpolate(scale_factor=((gh + 0.1) / oh, (gw + 0.1) / ow))``, written as the aten
    kernel call that F.interpolate makes (the output size and those scales), bit for bit;
    ``"dinov2_reg"``: bicubic to the size with antialias (the register models' rule, the same
    call as ``"bicubic"`` with ``antialias=True``); ``"scipy"``: bilinear with the corners
    aligned; otherwise ``mode`` to the size, ``align_corners=False``.
    """
    if mode == "dinov2":
        scale_h = (float(new_grid[0]) + offset) / float(old_grid[0])
        scale_w = (float(new_grid[1]) + offset) / float(old_grid[1])
        size = [new_grid[0], new_grid[1]]
        # The ignores: aten's (output_size, align_corners, scales_h, scales_w) overload is
        # missing in the stub (TorchScript compiles this, so each ignore ends its line).
        return torch._C._nn.upsample_bicubic2d(  # type: ignore[call-arg]
            table, size, False, scale_h, scale_w)  # type: ignore[arg-type]
    if mode == "dinov2_reg":
        return F.interpolate(table, size=new_grid, mode="bicubic", align_corners=False,
                             antialias=True)
    if mode == "scipy":
        return F.interpolate(table, size=new_grid, mode="bilinear", align_corners=True)
    return F.interpolate(table, size=new_grid, mode=mode, align_corners=False,
                         antialias=antialias)


def resample_pos_embed(pos_embed: torch.Tensor, new_grid: tuple[int, int], *,
                       old_grid: tuple[int, int] | None = None, num_prefix_tokens: int = 1,
                       mode: str = "bicubic", antialias: bool = False) -> torch.Tensor:
    """Resize a learned ``(1, P + gh * gw, D)`` table to a new grid, keeping the P prefix rows.

    Args:
        pos_embed: the table, prefix (class/distillation) rows first.
        new_grid: target ``(gh, gw)``; rectangular grids are fine.
        old_grid: source ``(gh, gw)``; default: the square grid the row count implies.
        num_prefix_tokens: rows that are not on the grid (copied unchanged).
        mode: ``"scipy"``: ``scipy.ndimage.zoom(grid, (nh / oh, nw / ow, 1), order=1)``, Google's
            rule for fine-tuning (computed in the table's own precision, float32 for float32);
            ``"bilinear"`` / ``"bicubic"``: ``F.interpolate`` with ``align_corners=False``;
            ``"dinov2"`` / ``"dinov2_reg"``: the run-time rules of DINOv2's plain and register
            models (see :func:`interpolate_pos_embed`), in float32.
        antialias: ``F.interpolate``'s antialias when shrinking (bilinear/bicubic only; the
            DINOv2 modes fix their own).

    Raises:
        ValueError: unknown mode, or a row count that does not fit the grid.
    """
    if mode not in RESAMPLE_MODES:
        raise ValueError(f"resample mode {mode!r} is not one of {', '.join(RESAMPLE_MODES)}")
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    n, dim = grid.shape[1], grid.shape[2]
    if old_grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"{n} grid rows are not a square grid: pass old_grid=(gh, gw)")
        old_grid = (side, side)
    if old_grid[0] * old_grid[1] != n:
        raise ValueError(f"old_grid={old_grid} does not match the table's {n} grid rows")
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    if mode == "scipy":
        from scipy import ndimage

        array = grid[0].detach().cpu().numpy().reshape(*old_grid, dim)  # (oh, ow, D)
        factors = (new_grid[0] / old_grid[0], new_grid[1] / old_grid[1], 1)
        zoomed = ndimage.zoom(array, factors, order=1)
        if zoomed.shape[:2] != tuple(new_grid):
            raise ValueError(f"scipy zoom gave a {zoomed.shape[:2]} grid, not {new_grid}")
        resized = torch.from_numpy(zoomed.reshape(1, -1, dim)).to(pos_embed)  # (1, N', D)
    else:
        table = grid.reshape(1, *old_grid, dim).permute(0, 3, 1, 2)  # (1, D, oh, ow)
        table = _resize_grid(table.float(), list(new_grid), list(old_grid), mode, antialias)
        resized = table.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed)  # (1, N', D)
    return torch.cat([prefix, resized], dim=1)


@torch.jit.unused
def _compiler_exporting() -> bool:
    return bool(torch.compiler.is_exporting())


def is_exporting() -> bool:
    """True inside ``torch.export`` (and the dynamo ONNX exporter), where a branch on the input
    size would fix the exported graph to the example's size."""
    if torch.jit.is_scripting():
        return False
    return _compiler_exporting()


def _symbolic(sizes: list[int]) -> bool:
    """Whether ``sizes`` hold symbolic ints (``torch.export`` with dynamic shapes)."""
    symbolic = False
    if not torch.jit.is_scripting():  # TorchScript leaves this out: it has no SymInt
        symbolic = any(isinstance(n, torch.SymInt) for n in sizes)
    return symbolic


def interpolate_pos_embed(pos_embed: torch.Tensor, new_grid: list[int], old_grid: list[int],
                          num_prefix_tokens: int = 1, mode: str = "bicubic",
                          antialias: bool = True) -> torch.Tensor:
    """The run-time resize of a learned ``(1, P + gh * gw, D)`` table to ``new_grid``.

    Pure torch (scriptable, traceable, differentiable), computed in float32 and returned in
    the table's dtype. At ``new_grid == old_grid`` the table itself is returned, so a
    dynamic-size model at its native size computes exactly what the fixed-size model does
    (and what the original DINOv2 does: its rule is no identity at the native size). Inside
    ``torch.export`` the table is always resampled, which the other rules do exactly at the
    native size; ``"dinov2"`` exports at fixed sizes only.

    Args:
        pos_embed: the table, prefix rows first.
        new_grid: ``[gh, gw]`` of the input.
        old_grid: ``[gh, gw]`` of the table.
        num_prefix_tokens: rows that are not on the grid (kept unchanged).
        mode: ``"bicubic"`` / ``"bilinear"`` (``F.interpolate``, ``align_corners=False``, as
            timm); ``"scipy"``: Google's ``ndimage.zoom(order=1)``, which is bilinear
            interpolation with the corner pixels aligned (``align_corners=True``);
            ``"dinov2"``: DINOv2's ``interpolate_pos_encoding`` for its plain models: bicubic,
            no antialias, scale factors ``((gh + 0.1) / oh, (gw + 0.1) / ow)``;
            ``"dinov2_reg"``: the same for its register models (``interpolate_offset=0``,
            ``interpolate_antialias=True``): antialiased bicubic to ``(gh, gw)``.
        antialias: antialias bicubic/bilinear when the grid shrinks (ignored for ``"scipy"``
            and the DINOv2 modes, which fix their own).

    Raises:
        ValueError: ``"dinov2"`` inside ``torch.export`` with symbolic sizes (non-strict
            export; a strict one fixes the size, which its check at other sizes reports).
    """
    exporting = is_exporting()
    if not exporting and new_grid[0] == old_grid[0] and new_grid[1] == old_grid[1]:
        return pos_embed
    if exporting and mode == "dinov2":
        # DINOv2's rule is no identity at the native size, and its kernel takes the scale
        # factors as constants, which a trace with symbolic sizes would fix
        if _symbolic(new_grid):
            raise ValueError("pos_embed_resample='dinov2' cannot be exported for dynamic image "
                             "sizes (its scale factors become constants of the trace); export "
                             "at a fixed size instead")
        if new_grid[0] == old_grid[0] and new_grid[1] == old_grid[1]:
            return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim = grid.shape[-1]
    table = grid.float().reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    table = _resize_grid(table, new_grid, old_grid, mode, antialias)  # (1, D, gh, gw)
    resized = table.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)  # (1, N', D)
    return torch.cat([prefix, resized], dim=1)


def sincos_pos_embed_for(pos_embed: torch.Tensor, new_grid: list[int], old_grid: list[int],
                         num_prefix_tokens: int = 0) -> torch.Tensor:
    """A sin-cos ``(1, P + gh * gw, D)`` table for ``new_grid``: big_vision's table computed for
    that grid (prefix rows kept), or ``pos_embed`` itself at its own grid."""
    if not is_exporting() and new_grid[0] == old_grid[0] and new_grid[1] == old_grid[1]:
        return pos_embed
    table = sincos_2d_pos_embed((new_grid[0], new_grid[1]), pos_embed.shape[-1]).to(pos_embed)
    return torch.cat([pos_embed[:, :num_prefix_tokens], table], dim=1)
