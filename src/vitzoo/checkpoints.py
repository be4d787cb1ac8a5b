"""Reading self-describing checkpoints and converting between formats.

Self-describing sources: vitzoo's ``.safetensors`` (config in the metadata), a hub-layout
directory (``config.json`` + ``model.safetensors``), and Google's ``.npz`` (the architecture is
read off the array shapes). ``convert_checkpoint`` turns a Google ``.npz`` into vitzoo's
safetensors and back.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._utils import atomic_path
from .adapters import jax_npz
from .config import ViTConfig
from .io import FORMAT_NAME, CheckpointError, LoadReport, read_model_file
from .safetensors_stream import write_safetensors

__all__ = ["Source", "convert_checkpoint", "detect_format", "read_npz", "read_source"]

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

GOOGLE_PREPROCESSING = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                        "interpolation": "bilinear", "crop_pct": 1.0}


@dataclass
class Source:
    """A checkpoint read from disk: vitzoo-layout tensors, the config fields, and provenance."""

    state: dict[str, torch.Tensor]
    config: dict[str, Any]
    origin: str
    """``"jax"`` (Google/JAX numerics) or ``"pytorch"``."""
    metadata: dict[str, str] = field(default_factory=dict)
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    zero_head: bool = False


def detect_format(path: str | Path) -> str:
    """``"jax_npz"``, ``"vitzoo"``, ``"hub_dir"`` or ``"state_dict"`` (needs an architecture)."""
    path = Path(path)
    if path.is_dir():
        return "hub_dir"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] == b"PK\x03\x04" and path.suffix != ".pth":
        return "jax_npz"
    if path.suffix == ".safetensors":
        _, metadata = read_model_file(path)
        return "vitzoo" if metadata.get("format") == FORMAT_NAME else "state_dict"
    return "state_dict"


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickles).

    Raises:
        CheckpointError: missing, truncated, corrupt, pickled or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"cannot read {path} as an .npz archive: {err}. The file is truncated, corrupt or "
            "not a NumPy archive; download it again"
        ) from err
    if not arrays:
        raise CheckpointError(f"{path} holds no arrays")
    return arrays


def _read_jax(path: Path, img_size: tuple[int, int] | None,
              progress: Progress | None = None) -> Source:
    arrays = read_npz(path)
    prefix = _prefix(arrays)
    tree, notes = jax_npz.canonicalize(arrays)
    del arrays  # the tree now holds the only reference, and gives each array up as converted
    try:
        config = jax_npz.infer_config(tree, notes, img_size)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err
    zero_head = jax_npz.head_is_zero(tree)
    try:
        state = {k: torch.from_numpy(v) for k, v in jax_npz.iter_vitzoo(tree, progress)}
    except KeyError as err:
        raise CheckpointError(f"{path} is not a ViT checkpoint vitzoo can read: {err}") from err
    metadata = {"source_format": "jax_npz", "source_layout": notes["layout"],
                "source_scanned": str(notes["scanned"]).lower(),
                "source_dtypes": ",".join(notes["dtypes"]),
                "source_prefix": prefix}
    return Source(state, config, "jax", metadata, dict(GOOGLE_PREPROCESSING), zero_head)


def _prefix(arrays: Mapping[str, np.ndarray]) -> str:
    for prefix in ("params/img/", "params/", "opt/target/"):
        if any(k.startswith(prefix) for k in arrays):
            return prefix
    return ""


def _read_vitzoo(path: Path) -> Source:
    state, metadata = read_model_file(path)
    try:
        config = json.loads(metadata["vitzoo_config"])
        pretrained = json.loads(metadata.get("pretrained_cfg", "{}"))
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} has no readable vitzoo_config metadata: {err}") from err
    origin = "jax" if config.get("gelu_approximate") == "tanh" else "pytorch"
    return Source(state, config, origin, metadata, pretrained)


def _hub_weights(path: Path) -> dict[str, torch.Tensor]:
    from .io import load_state_dict

    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return load_state_dict(path / name)
    raise CheckpointError(f"{path} has no model.safetensors or pytorch_model.bin")


def _read_hub_dir(path: Path) -> Source:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(
            f"{path} is a directory without config.json; point at a checkpoint file or a "
            "hub-layout directory (config.json + model.safetensors)"
        )
    try:
        hub_config = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_file} is not valid JSON: {err}") from err
    state = _hub_weights(path)
    pretrained = dict(hub_config.get("pretrained_cfg", {}))
    if "model_type" in hub_config:  # Hugging Face transformers
        from .adapters import hf_transformers

        try:
            config = hf_transformers.config_fields(hub_config, state)
        except ValueError as err:
            raise CheckpointError(f"{config_file}: {err}") from err
        state, unmatched = hf_transformers.to_vitzoo(state)
        if unmatched:
            raise CheckpointError(f"{path}: arrays with no vitzoo place: {', '.join(unmatched)}")
        pretrained.update(_hf_preprocessing(path))
        names = hf_transformers.labels(hub_config)
        if names and config["num_classes"] == len(names):
            pretrained["label_names"] = names
        return Source(state, config, "pytorch", {"source_format": "hf_transformers"}, pretrained)
    if "vitzoo_config" in hub_config:
        config = dict(hub_config["vitzoo_config"])
    elif "architecture" in hub_config:  # timm's hub layout
        from .registry import get_builder

        with torch.device("meta"):
            config = get_builder(hub_config["architecture"])().cfg.to_dict()
        if "num_classes" in hub_config:
            config["num_classes"] = hub_config["num_classes"]
    else:
        raise CheckpointError(
            f"{config_file} names no architecture (no 'vitzoo_config', 'architecture' or "
            "'model_type')"
        )
    from .adapters import timm

    origin = "jax" if config.get("gelu_approximate") == "tanh" else "pytorch"
    return Source(timm.to_vitzoo(state), config, origin, {}, pretrained)


def _hf_preprocessing(path: Path) -> dict[str, Any]:
    """Mean and std from a transformers ``preprocessor_config.json``, when there is one."""
    file = path / "preprocessor_config.json"
    if not file.is_file():
        return {}
    try:
        pre = json.loads(file.read_text())
    except json.JSONDecodeError:
        return {}
    out: dict[str, Any] = {}
    if "image_mean" in pre and "image_std" in pre:
        out["mean"], out["std"] = tuple(pre["image_mean"]), tuple(pre["image_std"])
    return out


def read_source(path: str | Path, *, source_format: str = "auto",
                img_size: tuple[int, int] | None = None,
                progress: Progress | None = None) -> Source:
    """Read a self-describing checkpoint into vitzoo's layout.

    Args:
        path: a Google ``.npz``, a vitzoo ``.safetensors`` or a hub-layout directory.
        source_format: ``"auto"``, ``"jax_npz"``, ``"vitzoo"`` or ``"hub_dir"``.
        img_size: the image size of a Google file with no position table (sin-cos).
        progress: called with ``(done, total)`` arrays while converting.
    """
    path = Path(path)
    fmt = detect_format(path) if source_format == "auto" else source_format
    if fmt == "jax_npz":
        return _read_jax(path, img_size, progress)
    if fmt == "vitzoo":
        return _read_vitzoo(path)
    if fmt == "hub_dir":
        return _read_hub_dir(path)
    if fmt == "state_dict" or fmt in _state_dict_formats():
        return _read_state_dict(path, "auto" if fmt == "state_dict" else fmt)
    raise CheckpointError(f"unknown source_format {fmt!r}: use 'auto', 'jax_npz', 'vitzoo', "
                          f"'hub_dir' or one of {', '.join(_state_dict_formats())}")


def _state_dict_formats() -> list[str]:
    from .adapters import STATE_DICT_FORMATS

    return list(STATE_DICT_FORMATS)


def _read_state_dict(path: Path, source_format: str) -> Source:
    """A plain state dict (timm, DeiT, torchvision, ViT-pytorch): the architecture is the
    registered one whose shapes fit; heads and image size come from the tensors."""
    from .adapters import convert_state_dict
    from .diagnose import CheckpointFacts, matching_architectures
    from .io import load_state_dict
    from .registry import get_builder

    try:
        state, fmt, unmatched = convert_state_dict(load_state_dict(path), source_format)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err
    if unmatched:
        raise CheckpointError(f"{path} ({fmt} layout) has arrays with no vitzoo place: "
                              + ", ".join(unmatched[:8]))
    candidates = matching_architectures(state)
    if not candidates:
        facts = CheckpointFacts.of(state)
        raise CheckpointError(
            f"{path} is a plain {fmt} state dict and no registered architecture has its shapes "
            f"(width {facts.width}, {facts.depth} blocks, {facts.grid_tokens} patches): build "
            "the model with vitzoo.create_model(NAME, ...) or a ViTConfig and call "
            "vitzoo.load_checkpoint(model, path)"
        )
    with torch.device("meta"):
        config = get_builder(candidates[0])().cfg.to_dict()
    config["num_classes"] = CheckpointFacts.of(state).num_classes
    if "pre_logits.fc.weight" in state:
        config["representation_size"] = int(state["pre_logits.fc.weight"].shape[0])
    logger.info("%s: %s layout, built as %s", path, fmt, candidates[0])
    return Source(state, config, "pytorch", {"source_format": fmt},
                  {"architecture": candidates[0]})


# -- conversion -----------------------------------------------------------------------------------
def _google_expressible(cfg: ViTConfig, layout: str) -> None:
    problems = []
    if cfg.distilled:
        problems.append("a distillation token")
    if cfg.fc_norm:
        problems.append("fc_norm pooling (Google normalises before pooling)")
    if cfg.init_values is not None:
        problems.append("LayerScale")
    if not cfg.qkv_bias:
        problems.append("q/k/v without bias")
    if cfg.global_pool == "avg" and cfg.class_token:
        problems.append("avg pooling next to a class token (Google's gap has no class token)")
    if layout == "vision_transformer" and (cfg.global_pool == "map" or cfg.pos_embed == "sincos"):
        problems.append("a MAP head or sin-cos embeddings (use layout='big_vision')")
    if layout == "big_vision" and cfg.backbone_layers is not None:
        problems.append("a hybrid ResNet stem (use layout='vision_transformer')")
    if problems:
        raise CheckpointError("this model cannot be written in Google's layout: it has "
                              + "; ".join(problems))


def _write_npz(source: Source, dst: Path, layout: str | None) -> None:
    cfg = ViTConfig.from_dict(source.config)
    meta = source.metadata
    if layout is None:
        layout = meta.get("source_layout") or (
            "big_vision" if cfg.global_pool == "map" or cfg.pos_embed == "sincos"
            else "vision_transformer")
    _google_expressible(cfg, layout)
    state = {k: v.detach().cpu().float().numpy() for k, v in source.state.items()}
    arrays = jax_npz.from_vitzoo(state, num_heads=cfg.num_heads, layout=layout)
    if meta.get("source_scanned") == "true":
        arrays = jax_npz.scan_blocks(arrays)
    if "|V2" in meta.get("source_dtypes", "").split(","):  # the source stored bfloat16
        arrays = {k: jax_npz.float32_to_bfloat16(v) for k, v in arrays.items()}
    prefix = meta.get("source_prefix", "")
    arrays = {prefix + k: v for k, v in arrays.items()}
    with atomic_path(dst) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _write_hf(source: Source, dst: Path) -> None:
    from .adapters import hf_transformers

    cfg = ViTConfig.from_dict(source.config)
    problems = []
    if cfg.backbone_layers is not None:
        problems.append("a hybrid ResNet stem")
    if cfg.global_pool != "token" or cfg.fc_norm:
        problems.append(f"global_pool={cfg.global_pool!r} (transformers classifies the class "
                        "token)")
    if cfg.representation_size or cfg.init_values is not None or cfg.pos_embed != "learn":
        problems.append("a representation layer, LayerScale or fixed position embeddings")
    if cfg.img_size[0] != cfg.img_size[1] or cfg.patch_size[0] != cfg.patch_size[1]:
        problems.append("a rectangular image or patch")
    if cfg.num_classes == 0:
        problems.append("no classifier head")
    if problems:
        raise CheckpointError("this model has no transformers equivalent: it has "
                              + "; ".join(problems))
    tensors, unmatched = hf_transformers.from_vitzoo(source.state, distilled=cfg.distilled)
    if unmatched:
        raise CheckpointError(f"no transformers name for {', '.join(unmatched)}")
    names = source.pretrained_cfg.get("label_names") or [
        f"LABEL_{i}" for i in range(cfg.num_classes)]
    act = "gelu" if cfg.gelu_approximate == "none" else "gelu_pytorch_tanh"
    hf_config = {
        "architectures": ["DeiTForImageClassificationWithTeacher" if cfg.distilled
                          else "ViTForImageClassification"],
        "model_type": "deit" if cfg.distilled else "vit",
        "hidden_size": cfg.embed_dim, "num_hidden_layers": cfg.depth,
        "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.mlp_hidden_dim,
        "hidden_act": act, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02, "layer_norm_eps": cfg.norm_eps,
        "image_size": cfg.img_size[0], "patch_size": cfg.patch_size[0],
        "num_channels": cfg.in_chans, "qkv_bias": cfg.qkv_bias,
        "encoder_stride": cfg.patch_size[0],
        "id2label": {str(i): n for i, n in enumerate(names)},
        "label2id": {n: i for i, n in enumerate(names)},
    }
    dst.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst / "model.safetensors") as tmp:
        write_safetensors(tmp, ((k, v.detach().cpu().contiguous().numpy())
                                for k, v in sorted(tensors.items())), {"format": "pt"})
    with atomic_path(dst / "config.json") as tmp:
        tmp.write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")


def convert_checkpoint(src: str | Path, dst: str | Path, *, source_format: str = "auto",
                       target_format: str | None = None, layout: str | None = None,
                       img_size: int | tuple[int, int] | None = None, verify: bool = False,
                       progress: Progress | None = None) -> Path:
    """Convert a checkpoint; the output format follows ``dst``'s suffix.

    ``.npz`` -> ``.safetensors``: a Google checkpoint to vitzoo's self-describing file (config
    and numerics in the metadata). ``.safetensors`` / directory -> ``.npz``: back to Google's
    layout (``layout="vision_transformer"`` for ``vit_jax.checkpoint.load``, or
    ``"big_vision"``; default: the layout the weights came from). ``target_format="hf"``:
    a Hugging Face transformers directory (``config.json`` + ``model.safetensors``) for
    ``ViTForImageClassification`` (``DeiTForImageClassificationWithTeacher`` when distilled).

    Args:
        src: the checkpoint to read.
        dst: the file to write (atomically: a failed conversion leaves nothing), or the
            directory for ``target_format="hf"``.
        source_format: as in :func:`read_source`.
        target_format: ``None`` (from ``dst``'s suffix: ``"vitzoo"`` or ``"jax_npz"``) or
            ``"hf"``.
        layout: Google layout of an ``.npz`` output.
        img_size: image size of a sin-cos source (no position table in the file).
        verify: check the result against Google's forward pass in NumPy (1e-5 on the outputs
            of two random images); a failure removes ``dst`` and raises.
        progress: called with ``(done, total)`` arrays.

    Returns:
        ``dst`` as a path.
    """
    from .verify import verify_against_jax

    dst = Path(dst)
    if img_size is not None and isinstance(img_size, int):
        img_size = (img_size, img_size)
    source = read_source(src, source_format=source_format, img_size=img_size,
                         progress=progress)
    if target_format not in (None, "hf", "vitzoo", "jax_npz"):
        raise CheckpointError(f"target_format={target_format!r} is not 'hf', 'vitzoo' or "
                              "'jax_npz'")
    if target_format == "hf":
        _write_hf(source, dst)
        return dst
    if target_format == "jax_npz" or (target_format is None and dst.suffix == ".npz"):
        _write_npz(source, dst, layout)
        if verify:
            try:
                verify_against_jax(dst, _model_from(source))
            except Exception:
                dst.unlink(missing_ok=True)
                raise
        return dst
    if target_format is None and dst.suffix != ".safetensors":
        raise CheckpointError(f"cannot tell the output format of {dst}: use .safetensors or "
                              ".npz, or pass target_format='hf' for a transformers directory")
    cfg = ViTConfig.from_dict(source.config)
    metadata = {"format": FORMAT_NAME, "vitzoo_config": cfg.to_json(),
                "pretrained_cfg": json.dumps(source.pretrained_cfg, default=list),
                **source.metadata}
    with atomic_path(dst) as tmp:
        write_safetensors(tmp, ((k, v.numpy()) for k, v in source.state.items()), metadata)
        if verify:
            model = _model_from(_read_vitzoo(tmp))
            verify_against_jax(Path(src), model)
    return dst


def _model_from(source: Source) -> torch.nn.Module:
    from .io import load_checkpoint
    from .models import build_model

    model = build_model(ViTConfig.from_dict(source.config)).eval()
    load_checkpoint(model, source.state, strict=True)
    return model


def fit_state(state: Mapping[str, torch.Tensor], native: ViTConfig, cfg: ViTConfig, *,
              resample: str, antialias: bool = False,
              report: LoadReport) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Adapt a checkpoint saved for ``native`` to a model built with ``cfg``.

    A different class count or representation layer drops the head (the model keeps its own,
    zero-initialised for JAX-origin weights, as Google fine-tunes); a model without the
    representation layer drops ``pre_logits`` (Google's ``load_pretrained`` rule); another
    grid resamples the position embeddings, prefix rows kept. What was done goes into
    ``report``.

    Returns:
        The adapted tensors and the top-level parts (``head``, ``pre_logits`` ...) the model
        must initialise itself.
    """
    state = dict(state)
    drop_head = (cfg.num_classes != native.num_classes
                 or cfg.representation_size != native.representation_size)
    drop_pre_logits = cfg.representation_size != native.representation_size
    drop_pool = cfg.global_pool != native.global_pool and native.global_pool == "map"
    fresh = ({"head", "head_dist"} if drop_head else set()) | (
        {"pre_logits"} if drop_pre_logits else set()) | ({"attn_pool"} if drop_pool else set())
    for key in list(state):
        if key.split(".")[0] in fresh:
            del state[key]
            report.dropped.append(key)
    if "pos_embed" in state and cfg.grid_size != native.grid_size:
        from .layers.pos_embed import resample_pos_embed

        state["pos_embed"] = resample_pos_embed(
            state["pos_embed"], cfg.grid_size, old_grid=native.grid_size,
            num_prefix_tokens=native.num_prefix_tokens, mode=resample, antialias=antialias)
        report.resampled["pos_embed"] = (
            f"{native.grid_size[0]}x{native.grid_size[1]} -> "
            f"{cfg.grid_size[0]}x{cfg.grid_size[1]}, {resample}"
            + (" with antialias" if antialias and resample != "scipy" else ""))
    return state, fresh
