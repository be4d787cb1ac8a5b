"""``convert_checkpoint`` and the writers: vitzoo's self-describing safetensors, Google's
``.npz`` (the published ``vision_transformer`` layout or big_vision's) and a Hugging Face
transformers directory.

Every output is written atomically; with ``verify=True`` it is checked against Google's
forward pass (:mod:`vitzoo.reference`) before it replaces anything, so a failed conversion
leaves nothing behind and an older file at the destination untouched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import numpy as np
import torch

from . import io
from ._utils import atomic_path
from .adapters import hf_transformers, jax_npz
from .config import ViTConfig
from .errors import CheckpointError, VerificationError
from .loading import (
    ProgressCallback,
    Source,
    iter_jax_state,
    jax_source,
    load_state,
    read_source,
)
from .models import VisionTransformer
from .reference import verify_against_jax

__all__ = ["TARGET_FORMATS", "convert_checkpoint", "stream_npz_to_vitzoo", "write_hf", "write_npz",
           "write_vitzoo"]

TARGET_FORMATS = ("vitzoo", "jax_npz", "hf")


def _model_from(source: Source) -> VisionTransformer:
    """The model a source describes, for verification (through the one load path)."""
    model, _ = load_state(source.state, cfg=source.native, native=source.native,
                          name="the converted checkpoint", source_format=source.source_format)
    return cast(VisionTransformer, model)  # built from the config (no model passed in)


def verify_round_trip(written: Path, source: Source, *, atol: float = 1e-6,
                      batch: int = 2, seed: int = 0) -> float:
    """Max absolute difference between the model the written file describes and the one the
    source describes, on random images at the native size (for sources without an
    independent reference in vitzoo: DINOv2, DeiT III, CLIP, timm ...). The config, the
    numerics and every tensor must survive the conversion, so the outputs are equal.

    Raises:
        VerificationError: the difference exceeds ``atol``.
    """
    expected_model = _model_from(source)
    got_model = _model_from(read_source(written, source_format="vitzoo"))
    cfg = expected_model.cfg
    images = torch.rand(batch, cfg.in_chans, *cfg.img_size,
                        generator=torch.Generator().manual_seed(seed)) * 2 - 1
    with torch.no_grad():
        expected, got = expected_model(images), got_model(images)
    diff = float((expected - got).abs().max()) if expected.shape == got.shape else float("inf")
    if not diff <= atol:
        raise VerificationError(f"the written file computes other outputs than its source "
                                f"(max difference {diff:.3g}); the conversion was not written")
    return diff


# -- Google's .npz --------------------------------------------------------------------------------
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


def _npz_arrays(source: Source, layout: str | None) -> dict[str, np.ndarray]:
    cfg = source.native
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
    return {prefix + k: v for k, v in arrays.items()}


def write_npz(source: Source, dst: Path, *, layout: str | None = None,
              verify: bool = False) -> Path:
    """Write ``source`` as a Google ``.npz`` (``layout``: the one it came from by default);
    with ``verify``, the written arrays must reproduce the model in Google's forward pass."""
    arrays = _npz_arrays(source, layout)
    with atomic_path(dst) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # mypy matches **arrays to allow_pickle
        if verify:
            verify_against_jax(tmp, _model_from(source))
    return dst


# -- vitzoo safetensors ---------------------------------------------------------------------------
def write_vitzoo(source: Source, dst: Path, *, verify_against: Path | None = None,
                 verify: bool = False) -> Path:
    """Write ``source`` as vitzoo's self-describing safetensors; with ``verify_against`` (the
    Google ``.npz`` it came from), the written file must reproduce Google's forward pass, with
    ``verify`` (any other source) the source's own model."""
    metadata = io.vitzoo_metadata(source.native, source.pretrained_cfg, source.metadata)
    tensors = ((k, v.detach().cpu().contiguous().numpy()) for k, v in source.state.items())
    with atomic_path(dst) as tmp:
        io.write_safetensors(tmp, tensors, metadata, entries=io.numpy_entries(source.state))
        if verify_against is not None:
            verify_against_jax(verify_against, _model_from(read_source(tmp,
                                                                       source_format="vitzoo")))
        elif verify:
            verify_round_trip(tmp, source)
    return dst


def stream_npz_to_vitzoo(src: Path, dst: Path, *, img_size: tuple[int, int] | None = None,
                         verify: bool = False, progress: ProgressCallback | None = None) -> Path:
    """A Google ``.npz`` converted to vitzoo's safetensors in one pass, the same bytes as
    :func:`write_vitzoo` writes for it: the header is made first from the member headers alone
    (names, dtypes and shapes of the converted tensors are known before any data is read),
    then each array is read, transformed once and written once into its final place, so
    memory holds a few arrays (the one read ahead, the one converted, the one being written;
    a scanned big_vision array: the stacked one, until its last block is written). With
    ``verify``, the written file must reproduce Google's forward pass before it is put in
    place.
    """
    with io.open_npz(src) as arrays:
        tree, source = jax_source(src, arrays, img_size)
        metadata = io.vitzoo_metadata(source.native, source.pretrained_cfg, source.metadata)
        entries = _entries(src, tree)
        with atomic_path(dst) as tmp:
            try:
                io.write_safetensors(tmp, iter_jax_state(src, tree, progress), metadata,
                                     entries=entries)
            except ValueError as err:  # (a CheckpointError too) naming the file
                if isinstance(err, CheckpointError):
                    raise
                raise CheckpointError(f"cannot convert {src}: {err}") from err
            if verify:
                verify_against_jax(src, _model_from(read_source(tmp, source_format="vitzoo")))
    return dst


def _entries(src: Path, tree: dict[str, object]) -> list[io.Entry]:
    try:
        return jax_npz.vitzoo_entries(tree)
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{src} is not a ViT checkpoint vitzoo can read: {err}") from err


# -- Hugging Face transformers --------------------------------------------------------------------
def _hf_problems(cfg: ViTConfig) -> list[str]:
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
    return problems


def _hf_config(cfg: ViTConfig, names: list[str]) -> dict[str, object]:
    act = "gelu" if cfg.gelu_approximate == "none" else "gelu_pytorch_tanh"
    return {
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


def write_hf(source: Source, dst: Path) -> Path:
    """Write ``source`` as a transformers directory (``config.json`` + ``model.safetensors``)
    for ``ViTForImageClassification`` (``DeiTForImageClassificationWithTeacher`` when
    distilled)."""
    cfg = source.native
    problems = _hf_problems(cfg)
    if problems:
        raise CheckpointError("this model has no transformers equivalent: it has "
                              + "; ".join(problems))
    tensors, unmatched = hf_transformers.from_vitzoo(source.state, distilled=cfg.distilled)
    if unmatched:
        raise CheckpointError(f"no transformers name for {', '.join(unmatched)}")
    names = source.pretrained_cfg.get("label_names") or [
        f"LABEL_{i}" for i in range(cfg.num_classes)]
    if dst.exists() and not dst.is_dir():
        raise CheckpointError(f"cannot write a transformers directory at {dst}: it is a file; "
                              "remove it or choose another destination")
    io.save_state_dict(dict(sorted(tensors.items())), dst / "model.safetensors", {"format": "pt"})
    with atomic_path(dst / "config.json") as tmp:
        tmp.write_text(json.dumps(_hf_config(cfg, names), indent=2, sort_keys=True) + "\n")
    return dst


# -- the conversion -------------------------------------------------------------------------------
def _target_format(dst: Path, target_format: str | None) -> str:
    if target_format is not None:
        if target_format not in TARGET_FORMATS:
            raise CheckpointError(f"target_format={target_format!r} is not 'hf', 'vitzoo' or "
                                  "'jax_npz'")
        return target_format
    if dst.suffix == ".npz":
        return "jax_npz"
    if dst.suffix == ".safetensors":
        return "vitzoo"
    raise CheckpointError(f"cannot tell the output format of {dst}: use .safetensors or "
                          ".npz, or pass target_format='hf' for a transformers directory")


def _is_google(src: Path, source_format: str) -> bool:
    """Whether ``src`` is read as a Google ``.npz`` (named, or detected from its content)."""
    if source_format == "auto":
        return io.detect_format(src) == "jax_npz"
    return source_format == "jax_npz"


def convert_checkpoint(src: str | Path, dst: str | Path, *, source_format: str = "auto",
                       target_format: str | None = None, layout: str | None = None,
                       img_size: int | tuple[int, int] | None = None, verify: bool = False,
                       progress: ProgressCallback | None = None) -> Path:
    """Convert a checkpoint; the output format follows ``dst``'s suffix.

    ``.npz`` -> ``.safetensors``: a Google checkpoint to vitzoo's self-describing file (config
    and numerics in the metadata). ``.safetensors`` / directory -> ``.npz``: back to Google's
    layout (``layout="vision_transformer"`` for ``vit_jax.checkpoint.load``, or
    ``"big_vision"``; default: the layout the weights came from). ``target_format="hf"``:
    a Hugging Face transformers directory (``config.json`` + ``model.safetensors``) for
    ``ViTForImageClassification`` (``DeiTForImageClassificationWithTeacher`` when distilled).

    Args:
        src: the checkpoint to read.
        dst: the file to write (atomically: a failed conversion leaves nothing, and an older
            file at ``dst`` as it was), or the directory for ``target_format="hf"``.
        source_format: as in :func:`vitzoo.loading.read_source`.
        target_format: ``None`` (from ``dst``'s suffix: ``"vitzoo"`` or ``"jax_npz"``) or
            ``"hf"``.
        layout: Google layout of an ``.npz`` output.
        img_size: image size of a sin-cos source (no position table in the file).
        verify: check the result before it is put in place: against Google's forward pass
            in NumPy (1e-5 on the outputs of two random images) when one side is a Google
            ``.npz`` (SigLIP's too); for other sources (DINOv2, DeiT III, CLIP, timm, ...),
            which have no independent reference in vitzoo, the written file must compute
            what its source computes (1e-6). A failure raises and writes nothing.
        progress: called with ``(done, total)`` arrays.

    Returns:
        ``dst`` as a path.
    """
    dst = Path(dst)
    fmt = _target_format(dst, target_format)
    if isinstance(img_size, int):
        img_size = (img_size, img_size)
    if fmt == "vitzoo" and _is_google(Path(src), source_format):
        return stream_npz_to_vitzoo(Path(src), dst, img_size=img_size, verify=verify,
                                    progress=progress)
    source = read_source(src, source_format=source_format, img_size=img_size,
                         progress=progress)
    google = source.source_format == "jax_npz"
    if verify and fmt == "hf":
        raise CheckpointError("verify=True checks .npz and .safetensors outputs; convert to "
                              "a transformers directory without it")
    if fmt == "hf":
        return write_hf(source, dst)
    if fmt == "jax_npz":
        return write_npz(source, dst, layout=layout, verify=verify)
    return write_vitzoo(source, dst, verify_against=Path(src) if verify and google else None,
                        verify=verify and not google)
