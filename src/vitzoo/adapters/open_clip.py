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
from .json_fields import (
    MAX_INT,
    get_bool,
    get_float,
    get_floats,
    get_int,
    get_mapping,
    get_pair,
    get_str,
)
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


def _tensor(state: Mapping[str, torch.Tensor], key: str, ndim: int, source: str
            ) -> torch.Tensor:
    """``state[key]`` (read from the file's ``source``), checked to have ``ndim`` dimensions."""
    if key not in state:
        raise ValueError(f"it has no {source} ({key}), which every CLIP image tower has")
    value = state[key]
    if value.ndim != ndim:
        raise ValueError(f"{source} ({key}) has shape {tuple(value.shape)}, not {ndim}-D as in "
                         "a CLIP image tower")
    return value


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
    proj = _tensor(state, "patch_embed.proj.weight", 4, "visual.conv1.weight")  # (D, 3, P, P)
    rows = int(_tensor(state, "pos_embed", 3, "visual.positional_embedding").shape[1]) - 1
    side = math.isqrt(max(rows, 0))
    if rows < 1 or side * side != rows:
        raise ValueError(f"the position table has {rows} patch rows, not a square grid")
    width = int(proj.shape[0])
    head = state.get("head.weight")
    return {
        "img_size": (side * int(proj.shape[-2]), side * int(proj.shape[-1])),
        "patch_size": (int(proj.shape[-2]), int(proj.shape[-1])), "in_chans": int(proj.shape[1]),
        "embed_dim": width, "depth": _blocks(state), "num_heads": max(width // 64, 1),
        "mlp_dim": int(_tensor(state, "blocks.0.mlp.fc1.weight", 2,
                               "visual.transformer.resblocks.0.mlp.c_fc.weight").shape[0]),
        "num_classes": int(_tensor(state, "head.weight", 2, "visual.proj").shape[0])
        if head is not None else 0,
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


def hub_config_fields(hub: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """ViTConfig fields from an ``open_clip_config.json``, and the timm architecture of a
    ``visual.trunk`` tower (its fields are then only the pooling and head).

    Raises:
        ValueError: no ``model_cfg`` with a ``vision_cfg``, a field of the wrong type (named),
            or a vision option vitzoo does not build.
    """
    model_cfg = get_mapping(hub, "model_cfg")
    vision = get_mapping(model_cfg, "vision_cfg", where="model_cfg")
    where = "model_cfg.vision_cfg"
    embed = get_int(model_cfg, "embed_dim", where="model_cfg")
    problems = [what for key, what in _UNSUPPORTED.items() if vision.get(key)]
    pool = get_str(vision, "pool_type", "tok", where=where)
    if pool != "tok":
        problems.append(f"pool_type={pool!r} (vitzoo pools the class token)")
    pos = get_str(vision, "pos_embed_type", "learnable", where=where)
    if pos != "learnable":
        problems.append(f"pos_embed_type={pos!r}")
    block = get_str(vision, "block_type", "default", where=where)
    if block != "default":
        problems.append(f"block_type={block!r}")
    if isinstance(vision.get("layers"), (list, tuple)):
        problems.append("a ResNet image tower (ModifiedResNet), not a ViT")
    norm = dict(get_mapping(vision, "norm_kwargs", {}, where=where))
    eps = get_float(norm, "eps", 1e-5, positive=True, where=f"{where}.norm_kwargs")
    norm.pop("eps", None)
    if norm:
        problems.append(f"LayerNorm arguments {sorted(norm)}")
    trunk = get_str(vision, "timm_model_name", "", where=where)
    if trunk:
        problems += _trunk_problems(vision)
    if problems:
        raise ValueError("its image tower has " + "; ".join(problems)
                         + ", which vitzoo's VisionTransformer does not build")
    if trunk:
        proj = get_str(vision, "timm_proj", "linear", where=where)
        return {"global_pool": _TIMM_POOLS[get_str(vision, "timm_pool", "avg", where=where)],
                "num_classes": 0 if proj == "none" else embed}, trunk
    return _tower_fields(model_cfg, vision, embed, eps), None


def _tower_fields(model_cfg: Mapping[str, Any], vision: Mapping[str, Any], embed: int,
                  eps: float) -> dict[str, Any]:
    """The fields of open_clip's own ``VisionTransformer`` tower."""
    where = "model_cfg.vision_cfg"
    width = get_int(vision, "width", 768, where=where)
    head_width = get_int(vision, "head_width", 64, where=where)
    if width % head_width:
        raise ValueError(f"field '{where}.head_width' ({head_width}) does not divide "
                         f"'{where}.width' ({width})")
    mlp_ratio = get_float(vision, "mlp_ratio", 4.0, positive=True, where=where)
    mlp_dim = int(width * mlp_ratio)
    if not 1 <= mlp_dim <= MAX_INT:
        raise ValueError(f"field '{where}.mlp_ratio' ({mlp_ratio}) gives an MLP of {mlp_dim} "
                         "units")
    init_values = vision.get("ls_init_value")
    return {
        "img_size": get_pair(vision, "image_size", 224, where=where),
        "patch_size": get_pair(vision, "patch_size", 16, where=where), "embed_dim": width,
        "depth": get_int(vision, "layers", 12, where=where),
        "num_heads": width // head_width, "mlp_dim": mlp_dim, "num_classes": embed,
        "class_token": True, "global_pool": "token", "pre_norm": True, "patch_bias": False,
        "norm_eps": eps,
        "act_layer": "quick_gelu" if get_bool(model_cfg, "quick_gelu", False,
                                              where="model_cfg") else "gelu",
        "gelu_approximate": "none", "head_bias": True,
        "init_values": None if init_values is None else get_float(
            vision, "ls_init_value", where=where),
    }


def _trunk_problems(vision: Mapping[str, Any]) -> list[str]:
    where = "model_cfg.vision_cfg"
    problems = []
    pool = get_str(vision, "timm_pool", "avg", where=where)
    if pool not in _TIMM_POOLS:
        problems.append(f"timm_pool={pool!r}")
    proj = get_str(vision, "timm_proj", "linear", where=where)
    if proj not in ("linear", "none", ""):
        problems.append(f"timm_proj={proj!r}")
    return problems


_CROP_MODES = {"shortest": "center", "squash": "squash", "longest": "border"}


def hub_preprocessing(hub: Mapping[str, Any]) -> dict[str, Any]:
    """Pretrained-cfg keys from ``preprocess_cfg`` (open_clip's defaults: OpenAI's mean and
    std, bicubic, ``resize_mode="shortest"``, i.e. resize and centre crop at crop_pct 1.0).

    Raises:
        ValueError: a field of the wrong type (named).
    """
    pre = get_mapping(hub, "preprocess_cfg", {})
    where = "preprocess_cfg"
    resize_mode = get_str(pre, "resize_mode", "shortest", choices=tuple(_CROP_MODES),
                          where=where)
    return {"mean": get_floats(pre, "mean", CLIP_MEAN, length=3, where=where),
            "std": get_floats(pre, "std", CLIP_STD, length=3, positive=True, where=where),
            "interpolation": get_str(pre, "interpolation", "bicubic", where=where,
                                     choices=("bicubic", "bilinear", "nearest")),
            "crop_pct": 1.0, "crop_mode": _CROP_MODES[resize_mode]}
