"""CLIP image towers: OpenAI's ``clip.model.VisionTransformer`` and open_clip's, which share
the ``visual.*`` names (Radford et al., "Learning Transferable Visual Models From Natural
Language Supervision", 2021), and open_clip towers that wrap a timm trunk (``visual.trunk.*``).

OpenAI's releases are TorchScript archives of the whole two-tower model in fp16 (read as data
by :mod:`vitzoo.io`); open_clip writes plain state dicts, hub directories
(``open_clip_config.json`` + ``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin``)
and training checkpoints (``{"epoch", "name", "state_dict": {"module.visual...": ...}}``).

The tower is timm's ``pre_norm`` ViT: a bias-free patch convolution, ``ln_pre`` as ``norm_pre``,
LayerNorm eps 1e-5, ``ln_post`` as ``norm``, and the projection ``proj (D, E)`` (used as
``x @ proj``) as a head ``(E, D)`` with a zero bias, as timm keeps it. OpenAI's weights run
QuickGELU; open_clip's say in their config (``quick_gelu``). The text tower and the two-tower
extras (``logit_scale``, OpenAI's ``input_resolution`` ...) are set aside, not converted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from ..pretrained.entry import CLIP_MEAN, CLIP_STD
from .rename import RenameTable, Rule, Transform

__all__ = ["CONFIG_FILE", "WEIGHT_FILES", "config_fields", "detect", "hub_config_fields",
           "hub_preprocessing", "preprocessing", "set_aside", "text_tower", "to_vitzoo"]

CONFIG_FILE = "open_clip_config.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
"""What open_clip's ``save_for_hf`` writes, in the order vitzoo prefers them."""

# In OpenAI's released archives; build_model deletes them before loading.
OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")

_V = "visual."
_B = _V + "transformer.resblocks.{i}."
_TRUNK = _V + "trunk."


def _cls_token(a: torch.Tensor) -> torch.Tensor:
    return a.reshape(1, 1, -1)  # (D,) -> (1, 1, D)


def _pos_embed(a: torch.Tensor) -> torch.Tensor:
    return a.unsqueeze(0)  # (1 + N, D) -> (1, 1 + N, D)


def _proj_to_head(a: torch.Tensor) -> torch.Tensor:
    return a.t().contiguous()  # x @ proj with proj (D, E) -> head.weight (E, D)


RENAMES = RenameTable([
    Rule(_V + "class_embedding", "cls_token", "cls_token"),
    Rule(_V + "positional_embedding", "pos_embed", "pos_embed"),
    Rule(_V + "conv1.weight", "patch_embed.proj.weight"),
    Rule(_V + "ln_pre.weight", "norm_pre.weight"),
    Rule(_V + "ln_pre.bias", "norm_pre.bias"),
    Rule(_B + "ln_1.weight", "blocks.{i}.norm1.weight"),
    Rule(_B + "ln_1.bias", "blocks.{i}.norm1.bias"),
    Rule(_B + "attn.in_proj_weight", "blocks.{i}.attn.qkv.weight"),  # rows [q; k; v] as timm
    Rule(_B + "attn.in_proj_bias", "blocks.{i}.attn.qkv.bias"),
    Rule(_B + "attn.out_proj.weight", "blocks.{i}.attn.proj.weight"),
    Rule(_B + "attn.out_proj.bias", "blocks.{i}.attn.proj.bias"),
    Rule(_B + "ls_1.gamma", "blocks.{i}.ls1.gamma"),  # open_clip's ls_init_value
    Rule(_B + "ln_2.weight", "blocks.{i}.norm2.weight"),
    Rule(_B + "ln_2.bias", "blocks.{i}.norm2.bias"),
    Rule(_B + "mlp.c_fc.weight", "blocks.{i}.mlp.fc1.weight"),
    Rule(_B + "mlp.c_fc.bias", "blocks.{i}.mlp.fc1.bias"),
    Rule(_B + "mlp.c_proj.weight", "blocks.{i}.mlp.fc2.weight"),
    Rule(_B + "mlp.c_proj.bias", "blocks.{i}.mlp.fc2.bias"),
    Rule(_B + "ls_2.gamma", "blocks.{i}.ls2.gamma"),
    Rule(_V + "ln_post.weight", "norm.weight"),
    Rule(_V + "ln_post.bias", "norm.bias"),
    Rule(_V + "proj", "head.weight", "proj"),
    # a timm trunk's projection (open_clip's TimmModel head, timm_proj="linear")
    Rule(_V + "head.proj.weight", "head.weight"),
    Rule(_V + "head.proj.bias", "head.bias"),
], transforms={
    "cls_token": Transform(_cls_token, lambda a: a.reshape(-1)),
    "pos_embed": Transform(_pos_embed, lambda a: a.squeeze(0)),
    "proj": Transform(_proj_to_head, _proj_to_head),
})


def detect(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` holds a CLIP image tower in OpenAI's / open_clip's names."""
    return "visual.class_embedding" in state or any(k.startswith(_TRUNK) for k in state)


def text_tower(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The keys outside the image tower: the text tower, ``logit_scale``, OpenAI's extras."""
    return [k for k in state if not k.startswith(_V)]


def set_aside(state: Mapping[str, torch.Tensor], *, described: bool = False
              ) -> tuple[list[str], list[str]]:
    """What is left out on purpose: ``(keys, notes for the load report)``.

    A plain file says neither its activation nor its head width; OpenAI's (recognised by its
    ``input_resolution`` / ``context_length`` / ``vocab_size``) are QuickGELU with 64-wide
    heads, and anything else is taken the same way, with a note saying so, unless a config
    ``described`` the model (an open_clip hub directory).
    """
    keys = text_tower(state)
    notes = [f"text tower ({len(keys)} keys) ignored"] if keys else []
    if (not described and "visual.class_embedding" in state
            and not any(k in state for k in OPENAI_EXTRAS)):
        notes.append("the file records neither its activation nor its head width: QuickGELU "
                     "and 64-wide heads assumed (OpenAI's); for other open_clip models pass "
                     "act_layer='gelu' (nn.GELU) and num_heads=, or load the hub directory "
                     f"({CONFIG_FILE})")
    return keys, notes


def _float32(a: torch.Tensor) -> torch.Tensor:
    # OpenAI's fp16 weights run in float32 on CPU (clip.load calls model.float())
    return a.float() if a.is_floating_point() and a.dtype != torch.float32 else a


def to_vitzoo(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The image tower in vitzoo's names (float32, a zero ``head.bias`` added to a projection
    without one) and its keys with no vitzoo place; :func:`text_tower` keys are left out."""
    tower = {k: v for k, v in state.items() if k.startswith(_V)}
    trunk = {k[len(_TRUNK):]: _float32(v) for k, v in tower.items() if k.startswith(_TRUNK)}
    renamed, unmatched = RENAMES.to_vitzoo(
        {k: v for k, v in tower.items() if not k.startswith(_TRUNK)})
    out = {**trunk, **{k: _float32(v) for k, v in renamed.items()}}
    head = out.get("head.weight")
    if head is not None and "head.bias" not in out:
        out["head.bias"] = torch.zeros(head.shape[0], dtype=head.dtype)
    return out, unmatched


def _blocks(state: Mapping[str, torch.Tensor]) -> int:
    return len({m.group(1) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})


def config_fields(state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """ViTConfig fields of an OpenAI-layout tower, read off its (vitzoo-named) tensors, with
    OpenAI's numerics; None for a timm trunk, whose architecture the tensors do not name.

    Raises:
        ValueError: the position table is not a class row plus a square grid.
    """
    if "norm_pre.weight" not in state or "patch_embed.proj.bias" in state:
        return None
    proj = state["patch_embed.proj.weight"]  # (D, 3, P, P)
    rows = int(state["pos_embed"].shape[1]) - 1
    side = math.isqrt(rows)
    if side * side != rows:
        raise ValueError(f"the position table has {rows} patch rows, not a square grid")
    width = int(proj.shape[0])
    return {
        "img_size": (side * int(proj.shape[-2]), side * int(proj.shape[-1])),
        "patch_size": (int(proj.shape[-2]), int(proj.shape[-1])), "in_chans": int(proj.shape[1]),
        "embed_dim": width, "depth": _blocks(state), "num_heads": max(width // 64, 1),
        "mlp_dim": int(state["blocks.0.mlp.fc1.weight"].shape[0]),
        "num_classes": int(state["head.weight"].shape[0]) if "head.weight" in state else 0,
        "class_token": True, "global_pool": "token", "pre_norm": True, "patch_bias": False,
        "norm_eps": 1e-5, "act_layer": "quick_gelu", "head_bias": True,
        "init_values": 1e-5 if "blocks.0.ls1.gamma" in state else None,
    }


def preprocessing(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """OpenAI's ``_transform``: shorter side to the input size (bicubic), centre crop of it
    (crop_pct 1.0), OpenAI's mean and std (the input size is the model's)."""
    return {"mean": CLIP_MEAN, "std": CLIP_STD, "interpolation": "bicubic", "crop_pct": 1.0,
            "crop_mode": "center"}


# -- open_clip hub directories --------------------------------------------------------------------
# vision_cfg options whose model vitzoo does not build (default values are fine)
_UNSUPPORTED = {
    "attentional_pool": "an attentional pooler (CoCa)",
    "no_ln_pre": "no ln_pre",
    "final_ln_after_pool": "ln_post after pooling",
    "act_kwargs": "activation arguments",
    "qk_norm": "q/k LayerNorms of open_clip's custom block",
    "scaled_cosine_attn": "scaled cosine attention",
    "scale_heads": "per-head attention scales",
    "scale_attn_inner": "a norm inside attention",
    "scale_attn": "a norm after attention",
    "scale_fc": "a norm inside the MLP",
    "timm_model_kwargs": "extra timm arguments",
}
_TIMM_POOLS = {"avg": "avg", "token": "token", "map": "map", "": ""}


def _pair(value: Any) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (list, tuple)) else (
        int(value), int(value))


def hub_config_fields(hub: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """ViTConfig fields from an ``open_clip_config.json``, and the timm architecture of a
    ``visual.trunk`` tower (its fields are then only the pooling and head).

    Raises:
        ValueError: no ``model_cfg``, or a vision option vitzoo does not build.
    """
    model_cfg = hub.get("model_cfg")
    if not isinstance(model_cfg, Mapping) or not isinstance(model_cfg.get("vision_cfg"), Mapping):
        raise ValueError("it has no model_cfg with a vision_cfg")
    vision, embed = model_cfg["vision_cfg"], int(model_cfg["embed_dim"])
    problems = [what for key, what in _UNSUPPORTED.items() if vision.get(key)]
    if vision.get("pool_type", "tok") != "tok":
        problems.append(f"pool_type={vision['pool_type']!r} (vitzoo pools the class token)")
    if vision.get("pos_embed_type", "learnable") != "learnable":
        problems.append(f"pos_embed_type={vision['pos_embed_type']!r}")
    if vision.get("block_type") not in (None, "default"):
        problems.append(f"block_type={vision['block_type']!r}")
    if isinstance(vision.get("layers"), (list, tuple)):
        problems.append("a ResNet image tower (ModifiedResNet), not a ViT")
    norm = dict(vision.get("norm_kwargs") or {})
    eps = float(norm.pop("eps", 1e-5))
    if norm:
        problems.append(f"LayerNorm arguments {sorted(norm)}")
    if vision.get("timm_model_name"):
        problems += _trunk_problems(vision)
    if problems:
        raise ValueError("its image tower has " + "; ".join(problems)
                         + ", which vitzoo's VisionTransformer does not build")
    if vision.get("timm_model_name"):
        proj = vision.get("timm_proj", "linear")
        return {"global_pool": _TIMM_POOLS[vision.get("timm_pool", "avg")],
                "num_classes": 0 if proj == "none" else embed}, str(vision["timm_model_name"])
    width = int(vision.get("width", 768))
    return {
        "img_size": _pair(vision.get("image_size", 224)),
        "patch_size": _pair(vision.get("patch_size", 16)), "embed_dim": width,
        "depth": int(vision.get("layers", 12)),
        "num_heads": width // int(vision.get("head_width", 64)),
        "mlp_dim": int(width * float(vision.get("mlp_ratio", 4.0))), "num_classes": embed,
        "class_token": True, "global_pool": "token", "pre_norm": True, "patch_bias": False,
        "norm_eps": eps, "act_layer": "quick_gelu" if model_cfg.get("quick_gelu") else "gelu",
        "gelu_approximate": "none", "head_bias": True,
        "init_values": vision.get("ls_init_value"),
    }, None


def _trunk_problems(vision: Mapping[str, Any]) -> list[str]:
    problems = []
    if vision.get("timm_pool", "avg") not in _TIMM_POOLS:
        problems.append(f"timm_pool={vision['timm_pool']!r}")
    if vision.get("timm_proj", "linear") not in ("linear", "none", ""):
        problems.append(f"timm_proj={vision['timm_proj']!r}")
    return problems


def hub_preprocessing(hub: Mapping[str, Any]) -> dict[str, Any]:
    """Pretrained-cfg keys from ``preprocess_cfg`` (open_clip's defaults: OpenAI's mean and
    std, bicubic, ``resize_mode="shortest"``, i.e. resize and centre crop at crop_pct 1.0)."""
    pre = hub.get("preprocess_cfg") or {}
    crop_mode = {"shortest": "center", "squash": "squash", "longest": "border"}.get(
        pre.get("resize_mode", "shortest"), "center")
    return {"mean": tuple(pre.get("mean", CLIP_MEAN)), "std": tuple(pre.get("std", CLIP_STD)),
            "interpolation": pre.get("interpolation", "bicubic"), "crop_pct": 1.0,
            "crop_mode": crop_mode}
