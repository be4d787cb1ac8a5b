"""``vitzoo info NAME``: architecture, parameters, GFLOPs, tags and aliases."""

from __future__ import annotations

import argparse
import json

from ..info import ModelInfo, model_info

_POS_EMBEDS = {"learn": "learned", "sincos": "fixed 2-D sin-cos"}


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "info", help="describe an architecture",
        description="Show an architecture's configuration, parameter count, GFLOPs at its "
                    "native size, pretrained tags and aliases. Accepts aliases.",
    )
    parser.add_argument("name", help="architecture, alias or arch.tag, e.g. vit_b16")
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")
    parser.set_defaults(run=run)


def format_info(info: ModelInfo) -> str:
    cfg = info.config
    token = "class token" + (" + distillation token" if cfg.distilled else "")
    pool = {"token": token, "avg": "mean of patch tokens",
            "map": "attention pooling (MAP head)"}[cfg.global_pool]
    if cfg.global_pool == "avg":
        pool += " (norm after pooling)" if cfg.fc_norm else " (final norm, then mean)"
    gelu = "exact (erf)" if cfg.gelu_approximate == "none" else "tanh approximation"
    lines = [f"{info.name}  ({info.model_class})"]
    if cfg.backbone_layers is not None:
        stages = f"stages {cfg.backbone_layers}" if cfg.backbone_layers else "stem only"
        fh, fw = cfg.feature_size
        lines.append(f"  backbone       ResNet {stages}, width {cfg.backbone_width}, "
                     f"{fh}x{fw} feature map (weight-standardised, GroupNorm, TF SAME)")
    lines += [
        f"  input          {cfg.in_chans}x{cfg.img_size[0]}x{cfg.img_size[1]}, "
        f"patch {cfg.patch_size[0]}x{cfg.patch_size[1]}, "
        f"grid {cfg.grid_size[0]}x{cfg.grid_size[1]} = {cfg.num_patches} tokens",
        f"  width / depth  {cfg.embed_dim} / {cfg.depth} blocks, {cfg.num_heads} heads, "
        f"MLP {cfg.mlp_hidden_dim}",
        f"  pooling        {pool}",
        f"  head           {cfg.num_classes} classes"
        + (f", representation layer {cfg.representation_size}"
           if cfg.representation_size else ""),
        f"  numerics       GELU {gelu}, LayerNorm eps {cfg.norm_eps:g}, "
        f"position embeddings {_POS_EMBEDS[cfg.pos_embed]}",
        f"  parameters     {info.num_params:,}",
        f"  GFLOPs         {info.gflops:.2f} (multiply-adds at {cfg.img_size[0]}x"
        f"{cfg.img_size[1]}, the papers' convention)",
    ]
    if info.tags:
        tags = [f"{t} (default)" if t == info.default_tag else t for t in info.tags]
        lines.append(f"  tags           {', '.join(tags)}")
    else:
        lines.append("  tags           none (no pretrained weights)")
    if info.aliases:
        lines.append(f"  aliases        {', '.join(info.aliases)}")
    if info.weights:
        lines += _format_weights(info.weights)
    return "\n".join(lines)


def _format_weights(w: dict) -> list[str]:
    numerics = ("JAX (tanh GELU)" if w["origin"] == "jax" else "PyTorch (exact GELU)")
    sources = [s for s in (w["hf_hub_id"] and f"hf-hub:{w['hf_hub_id']}", w["url"]) if s]
    mean = ", ".join(f"{v:g}" for v in w["mean"])
    std = ", ".join(f"{v:g}" for v in w["std"])
    lines = [
        f"weights {w['tag']}",
        f"  classes        {w['num_classes']}",
        f"  trained in     {numerics}",
        f"  preprocessing  {w['input_size'][1]}x{w['input_size'][2]}, mean ({mean}), "
        f"std ({std}), crop_pct {w['crop_pct']:g}, {w['interpolation']}",
        f"  sources        {'; '.join(sources) if sources else 'none (no weights)'}",
        f"  license        {w['license']}",
    ]
    if w["paper"]:
        lines.append(f"  paper          {w['paper']}")
    if w["top1"] is not None:
        lines.append(f"  ImageNet top-1 {w['top1']:.2f} (reported)")
    return lines


def run(args: argparse.Namespace) -> int:
    info = model_info(args.name)
    print(json.dumps(info.to_dict(), indent=2) if args.json else format_info(info))
    return 0
