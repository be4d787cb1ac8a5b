"""What a Vision Transformer looks at: attention rollout, class-token heat maps and their picture.

Attention rollout is from Abnar & Zuidema, "Quantifying Attention Flow in Transformers"
(ACL 2020): each block's attention, averaged over heads, gets the identity added for the
residual connection and its rows renormalised; the product of these matrices through the
blocks says how much each input token contributes to each output token. The class token's
row over the patch tokens is the heat map. The functions here are pure (tensors in, tensors
out) and take the probabilities of ``model.attention_maps(x)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ._utils import atomic_path
from .errors import ConfigError, MissingDependencyError

__all__ = ["HEAD_FUSIONS", "attention_rollout", "class_token_map", "fuse_heads", "save_heatmap"]

HEAD_FUSIONS = ("mean", "max", "min")
"""How the heads of a block are combined: the paper averages them."""

_PLOT_EXTRA = 'pip install "vitzoo[plot]"'


def fuse_heads(attn: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """One block's attention ``(B, H, N, N)`` combined over heads into ``(B, N, N)``.

    Args:
        attn: attention probabilities ``(B, H, N, N)``; a ``(B, N, N)`` tensor is taken as
            already fused and returned as it is.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over the heads.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ConfigError(f"head_fusion={head_fusion!r} is not one of "
                          f"{', '.join(map(repr, HEAD_FUSIONS))}")
    if attn.ndim == 3:
        return attn
    if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2]:
        raise ConfigError(f"expected attention maps (B, H, N, N) or (B, N, N), got shape "
                          f"{tuple(attn.shape)}")
    if head_fusion == "mean":
        return attn.mean(dim=1)
    return attn.amax(dim=1) if head_fusion == "max" else attn.amin(dim=1)


def attention_rollout(maps: Sequence[torch.Tensor], *, head_fusion: str = "mean",
                      residual: bool = True) -> torch.Tensor:
    """Attention rollout through consecutive blocks (Abnar & Zuidema 2020).

    ``R = Â_L ... Â_2 Â_1`` with ``Â_l = rownorm(fuse(A_l) + I)``: row i of R is how much
    each input token flows into output token i. Computed in float64, returned in the maps'
    dtype.

    Args:
        maps: the attention probabilities of consecutive blocks, first block first, each
            ``(B, H, N, N)`` or head-fused ``(B, N, N)`` (``model.attention_maps(x)``).
        head_fusion: how each block's heads are combined (:func:`fuse_heads`).
        residual: add the identity for the residual connection (the paper's rollout);
            ``False`` multiplies the raw attention.

    Returns:
        ``(B, N, N)``; each row sums to one.
    """
    if not maps:
        raise ConfigError("attention_rollout needs the attention maps of at least one block")
    fused = [fuse_heads(a, head_fusion) for a in maps]
    shape = fused[0].shape
    if any(a.shape != shape for a in fused):
        raise ConfigError(f"attention maps of different shapes: {[tuple(a.shape) for a in fused]}")
    n = shape[-1]
    eye = torch.eye(n, dtype=torch.float64, device=fused[0].device)
    rollout = eye.expand(shape[0], n, n)
    for a in fused:
        a = a.to(torch.float64)
        if residual:
            a = a + eye
        a = a / a.sum(dim=-1, keepdim=True)  # rows sum to one again
        rollout = a @ rollout  # (B, N, N)
    return rollout.to(fused[0].dtype)


def class_token_map(attn: torch.Tensor, grid_size: Sequence[int], *, num_prefix_tokens: int = 1,
                    token: int = 0) -> torch.Tensor:
    """The row of one token (the class token) over the patch tokens, as a ``(B, gh, gw)`` map.

    Args:
        attn: ``(B, N, N)`` (a head-fused block or :func:`attention_rollout`) or one head's
            ``(B, N, N)``; ``N = num_prefix_tokens + gh * gw``.
        grid_size: the patch grid ``(gh, gw)`` (``model.patch_embed.grid_size``).
        num_prefix_tokens: class / distillation / register tokens before the patches
            (``model.num_prefix_tokens``).
        token: the row to take; 0 is the class token.
    """
    gh, gw = (int(g) for g in grid_size)
    if attn.ndim != 3 or attn.shape[-1] != attn.shape[-2]:
        raise ConfigError(f"expected a (B, N, N) attention matrix, got shape {tuple(attn.shape)}; "
                          "fuse the heads first (fuse_heads) or pick one")
    if attn.shape[-1] != num_prefix_tokens + gh * gw:
        raise ConfigError(f"{attn.shape[-1]} tokens are not {num_prefix_tokens} prefix tokens "
                          f"+ a {gh}x{gw} patch grid")
    if not 0 <= token < num_prefix_tokens:
        raise ConfigError(f"token={token} is not a prefix token (the model has "
                          f"{num_prefix_tokens}); a model without a class token has no "
                          "class-token map")
    row = attn[:, token, num_prefix_tokens:]  # (B, gh * gw)
    return row.reshape(-1, gh, gw)  # (B, gh, gw), row-major like the patch grid


def save_heatmap(image: torch.Tensor, heat: torch.Tensor, path: str | Path, *,
                 title: str | None = None, alpha: float = 0.5, cmap: str = "inferno") -> Path:
    """Draw ``image``, the ``heat`` map and the two overlaid, and write the picture atomically.

    Needs matplotlib (``pip install "vitzoo[plot]"``). The heat map covers the whole image,
    one cell per patch; all three panels share pixel axes (ticks and labels), and the colour
    bar, labelled, shows the map's values.

    Args:
        image: ``(C, H, W)`` with values in [0, 1] (C = 1 or 3).
        heat: ``(gh, gw)``.
        path: the picture; the format follows the suffix (``.png``, ``.pdf``, ``.svg``, ...).
        title: a line above the two panels.
        alpha: opacity of the heat map in the overlay.
        cmap: a matplotlib colour map.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise MissingDependencyError(f"drawing heat maps needs matplotlib: {_PLOT_EXTRA}") \
            from err
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    formats = Figure().canvas.get_supported_filetypes()
    if fmt not in formats:
        raise ConfigError(f"cannot write a {path.suffix or 'suffix-less'} picture; use one of "
                          f"{', '.join('.' + f for f in sorted(formats))}")
    if image.ndim != 3 or image.shape[0] not in (1, 3) or heat.ndim != 2:
        raise ConfigError(f"expected an image (C, H, W) with C = 1 or 3 and a heat map (gh, gw), "
                          f"got {tuple(image.shape)} and {tuple(heat.shape)}")
    pixels = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()  # (H, W, C)
    h, w = pixels.shape[:2]
    grey = pixels.shape[-1] == 1
    shown = pixels[..., 0] if grey else pixels
    values = heat.detach().float().cpu().numpy()
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)  # one heat cell per patch, over the whole image
    figure = Figure(figsize=(9.6, 3.4), layout="constrained")
    panels = figure.subplots(1, 3)
    for axes, name in zip(panels, ("input", "attention", "overlay"), strict=True):
        axes.set_title(name, fontsize=9)
        axes.set_xlabel("x (pixels)", fontsize=8)
        axes.tick_params(labelsize=7)
    panels[0].set_ylabel("y (pixels)", fontsize=8)
    for axes in (panels[0], panels[2]):
        axes.imshow(shown, cmap="gray" if grey else None, vmin=0, vmax=1,
                    interpolation="nearest")
    drawn = panels[1].imshow(values, cmap=cmap, extent=extent, interpolation="nearest")
    panels[2].imshow(values, cmap=cmap, alpha=alpha, extent=extent, interpolation="nearest")
    bar = figure.colorbar(drawn, ax=panels[1], fraction=0.046, pad=0.04)
    bar.set_label("attention", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=fmt, dpi=150)
    return path
