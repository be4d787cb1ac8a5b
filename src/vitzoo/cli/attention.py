"""``vitzoo attention IMAGE --model MODEL -o OUT``: where the class token looks, over the image."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

import torch

from ..data import create_transform, resolve_data_config
from ..errors import ConfigError, MissingDependencyError
from ..explain import HEAD_FUSIONS, attention_rollout, class_token_map, fuse_heads, save_heatmap
from ..factory import open_model
from ..models import VisionTransformer
from .predict import class_names


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "attention", help="draw an attention heat map over an image",
        description="Draw where MODEL's class token attends over IMAGE, preprocessed as the "
                    "model expects: attention rollout through every block (Abnar & Zuidema "
                    "2020, the default) or one block's attention. Needs matplotlib "
                    '(pip install "vitzoo[plot]").',
    )
    parser.add_argument("image", help="an image file (anything Pillow reads)")
    parser.add_argument("--model", required=True,
                        help="checkpoint file or directory, or NAME[.TAG]")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="the picture (.png, .pdf, .svg, ...)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--rollout", action="store_true",
                       help="attention rollout through every block (default)")
    which.add_argument("--block", type=int, metavar="N",
                       help="one block's attention (0 = first, -1 = last); default: the rollout")
    parser.add_argument("--head", default="mean", metavar="mean|max|min|I",
                        help="combine the heads by mean (default), max or min, or (with "
                             "--block) show head I only")
    parser.add_argument("--alpha", type=float, default=0.6, help="heat map opacity")
    parser.set_defaults(run=run)


def _read_image(path: str) -> Any:  # a PIL image
    from ..data.images import open_image  # Pillow, imported where it is used

    return open_image(path)  # a DatasetError names a missing, broken or oversized file


def _head(text: str, rollout: bool) -> str | int:
    if text in HEAD_FUSIONS:
        return text
    if not rollout and text.lstrip("-").isdigit():
        return int(text)
    allowed = "mean, max or min" + ("" if rollout else ", or a head index")
    raise ConfigError(f"--head {text!r}: use {allowed}")


def _matrix(model: VisionTransformer, x: torch.Tensor, block: int | None,
            head: str | int) -> torch.Tensor:
    """The (1, N, N) matrix whose class-token row is drawn."""
    if block is None:
        return attention_rollout(model.attention_maps(x), head_fusion=str(head))
    (attn,) = model.attention_maps(x, indices=[block])  # (1, H, N, N)
    if isinstance(head, int):
        heads = attn.shape[1]
        if not -heads <= head < heads:
            raise ConfigError(f"--head {head}: the model has {heads} heads (0..{heads - 1})")
        return attn[:, head]  # (1, N, N)
    return fuse_heads(attn, head)


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingDependencyError('vitzoo attention draws with matplotlib: '
                                     'pip install "vitzoo[plot]"')
    rollout = args.block is None
    head = _head(args.head, rollout)
    image = _read_image(args.image)
    model = open_model(args.model).eval()
    if model.num_prefix_tokens == 0 or not model.cfg.class_token:
        raise ConfigError(f"{args.model} has no class token, so there is no class-token "
                          "attention to draw")
    config = resolve_data_config(model)
    x = create_transform(config)(image)[None]  # (1, C, H, W), normalised
    with torch.no_grad():
        heat = class_token_map(_matrix(model, x, args.block, head),
                               model.patch_embed.grid_size,
                               num_prefix_tokens=model.num_prefix_tokens)[0]  # (gh, gw)
        logits = model(x)[0] if model.num_classes else None
    mean = torch.tensor(config["mean"]).view(-1, 1, 1)
    std = torch.tensor(config["std"]).view(-1, 1, 1)
    shown = x[0] * std + mean  # the model's input, back in [0, 1]
    what = "rollout" if rollout else f"block {args.block}"
    what += f", heads {head}" if isinstance(head, str) else f", head {head}"
    title = f"{Path(args.model).name}: {what}"
    if logits is not None:
        p, i = logits.softmax(-1).max(-1)
        title += f"; predicted {class_names(model)[int(i)]} ({100 * float(p):.1f}%)"
    out = save_heatmap(shown, heat, args.output, title=title, alpha=args.alpha)
    print(f"wrote {out} ({what})")
    return 0
