"""``vitzoo info NAME``: architecture, parameters, GFLOPs, tags and aliases."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..config import ViTConfig
from ..info import ModelInfo, model_info

_POS_EMBEDS = {"learn": "learned", "sincos": "fixed 2-D sin-cos"}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "info", help="describe an architecture",
        description="Show an architecture's configuration, parameter count, GFLOPs at its "
                    "native size, pretrained tags and aliases. Accepts aliases.",
    )
    parser.add_argument("name", help="architecture, alias or arch.tag, e.g. vit_b16")
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")
    parser.set_defaults(run=run)


def _activation(act_layer: str, gelu_approximate: str) -> str:
    if act_layer == "quick_gelu":
        return "QuickGELU"
    return "GELU " + ("exact (erf)" if gelu_approximate == "none" else "tanh approximation")


def _tokens(cfg: ViTConfig) -> str:
    """The prefix tokens and the position table, in words."""
    tokens = ["class token"] if cfg.class_token else ["no class token"]
    if cfg.distilled:
        tokens.append("distillation token")
    if cfg.reg_tokens:
        tokens.append(f"{cfg.reg_tokens} register tokens")
    table = "learned" if cfg.pos_embed == "learn" else _POS_EMBEDS[cfg.pos_embed]
    if cfg.no_embed_class and cfg.num_prefix_tokens:
        table += ", patches only"
    extras = [" + ".join(tokens), f"position embeddings {table}"]
    if cfg.pre_norm:
        extras.append("norm before the blocks (ln_pre)")
    if cfg.dynamic_img_size:
        extras.append(f"any input size ({cfg.pos_embed_resample} resampling)")
    return "; ".join(extras)


def format_info(info: ModelInfo) -> str:
    cfg = info.config
    token = "class token" + (" + distillation token" if cfg.distilled else "")
    pool = {"token": token, "avg": "mean of patch tokens", "": "none (every token)",
            "map": "attention pooling (MAP head)"}[cfg.global_pool]
    if cfg.global_pool == "avg":
        pool += " (norm after pooling)" if cfg.fc_norm else " (final norm, then mean)"
    mlp = f"SwiGLU {cfg.mlp_hidden_dim}" if cfg.mlp_layer == "swiglu" else str(cfg.mlp_hidden_dim)
    extras = ", LayerScale" if cfg.init_values is not None else ""
    extras += ", QK norm" if cfg.qk_norm else ""
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
        f"MLP {mlp}{extras}",
        f"  tokens         {_tokens(cfg)}",
        f"  pooling        {pool}",
        f"  head           {cfg.num_classes} classes"
        + (f", representation layer {cfg.representation_size}"
           if cfg.representation_size else ""),
        f"  numerics       {_activation(cfg.act_layer, cfg.gelu_approximate)}, LayerNorm eps "
        f"{cfg.norm_eps:g}" + ("" if cfg.patch_bias else ", patch projection without bias"),
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


def _format_weights(w: dict[str, Any]) -> list[str]:
    n = w.get("numerics", {})
    act = ("QuickGELU" if n.get("act_layer") == "quick_gelu" else
           "tanh GELU" if n.get("gelu_approximate") == "tanh" else "exact GELU")
    numerics = f"{'JAX' if w['origin'] == 'jax' else 'PyTorch'} ({act})"
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
        how = f"{w['top1_protocol']}, reported" if w.get("top1_protocol") else "reported"
        lines.append(f"  ImageNet top-1 {w['top1']:.2f} ({how})")
    return lines


def run(args: argparse.Namespace) -> int:
    info = model_info(args.name)
    print(json.dumps(info.to_dict(), indent=2) if args.json else format_info(info))
    return 0
