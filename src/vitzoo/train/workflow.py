"""The ``vitzoo finetune`` workflow as one function: data by name, model by name, recipe preset."""

from __future__ import annotations

import logging
from collections.abc import Sized
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ..config import ViTConfig
from ..data import LabelledImages, create_transform, open_dataset, resolve_data_config
from ..errors import VitzooError
from ..factory import open_model
from ..models import VisionTransformer, build_model
from ..pretrained import build_pretrained_cfg
from . import dist
from .config import preset_config
from .loop import TrainResult, finetune
from .state import check_output_dir, seed_everything

__all__ = ["DIGITS_MODEL", "finetune_on"]

logger = logging.getLogger(__name__)

# The model of the "digits" preset: a 4-block ViT on the 8x8 grey digits (2x2 patches, 16
# tokens) with big_vision's fixed sin-cos position embeddings, trained from scratch.
DIGITS_MODEL = ViTConfig(img_size=(8, 8), patch_size=(2, 2), in_chans=1, embed_dim=64, depth=4,
                         num_heads=4, num_classes=10, pos_embed="sincos")
DEFAULT_MODEL = "vit_base_patch16_224.augreg_in21k"


def _model(name: str | None, data: str, num_classes: int, pretrained: bool,
           overrides: dict[str, Any]) -> VisionTransformer:
    if name is None and data == "digits":
        model = build_model(DIGITS_MODEL.replace(**overrides))
        model.pretrained_cfg = build_pretrained_cfg(
            model.cfg, stored={"mean": (0.5,), "std": (0.5,), "crop_pct": 1.0,
                               "interpolation": "bicubic"}).to_dict()
        return model
    return open_model(name or DEFAULT_MODEL, pretrained=pretrained, num_classes=num_classes,
                      **overrides)


def finetune_on(data: str = "digits", *, model: str | None = None, preset: str | None = None,
                output_dir: str | Path = "runs/finetune", pretrained: bool = True,
                teacher: str | None = None, resume: bool = False, overwrite: bool = False,
                model_overrides: dict[str, Any] | None = None,
                **train_overrides: Any) -> TrainResult:
    """Fine-tune a model on a named dataset with a recipe preset (what ``vitzoo finetune`` runs).

    Args:
        data: ``digits`` (bundled), ``cifar10[:PATH]``, ``cifar100[:PATH]``, ``folder:PATH``.
        model: an architecture name (with ``pretrained`` weights; default
            ``vit_base_patch16_224.augreg_in21k``, Google's i21k ViT-B/16) or a checkpoint
            file. For ``digits`` the default is the preset's tiny ViT from scratch.
        preset: ``"vit"`` (the release's recipe) or ``"digits"``; default ``"digits"`` for
            the digits and ``"vit"`` otherwise.
        output_dir: checkpoints, metrics and curves.
        pretrained: load the model's pretrained weights (a new zero head for JAX weights,
            position embeddings resampled to ``model_overrides["img_size"]``).
        teacher: a checkpoint (or pretrained name) of a classifier of this data, for DeiT
            distillation (with ``distill="soft"`` or ``"hard"``).
        resume: continue the run in ``output_dir``.
        overwrite: start over when ``output_dir`` holds a run (its files are removed);
            without ``resume`` or ``overwrite`` such a directory is refused before anything
            is loaded.
        model_overrides: ViTConfig fields for the model (``img_size``, ``drop_path_rate`` ...).
        **train_overrides: TrainConfig fields (``steps``, ``lr``, ``batch_size`` ...); a
            new ``steps`` scales the preset's warmup and evaluation / checkpoint intervals
            that are not given too (:func:`~vitzoo.train.config.preset_config`).
    """
    check_output_dir(Path(output_dir), resume=resume, overwrite=overwrite)
    cfg = preset_config(preset or ("digits" if data == "digits" else "vit"), **train_overrides)
    train_set, eval_set = open_dataset(data, train=True), open_dataset(data, train=False)
    classes = list(getattr(train_set, "classes", []))
    seed_everything(cfg.seed)  # before the model is built: its random initialisation too
    net = _model(model, data, len(classes), pretrained, dict(model_overrides or {}))
    net.pretrained_cfg = build_pretrained_cfg(net.cfg, stored=net.pretrained_cfg,
                                              label_names=classes, dataset=data).to_dict()
    data_cfg = resolve_data_config(net)
    eval_tf = create_transform(data_cfg, eval_resize="resize")  # the release tests on a resize
    train_tf = (create_transform(data_cfg, train=True, scale=cfg.train_scale,
                                 ratio=cfg.train_ratio, hflip=cfg.hflip)
                if cfg.augment else eval_tf)
    teacher_model = _teacher(teacher, len(classes)) if teacher is not None else None
    result = finetune(net, train_set, eval_set, cfg, output_dir=output_dir,
                      train_transform=train_tf, eval_transform=eval_tf, teacher=teacher_model,
                      resume=resume, overwrite=overwrite)
    if data == "digits" and dist.world()[1] == 0:
        _write_examples(eval_set, Path(output_dir) / "examples", seed=cfg.seed)
    return result


def _teacher(name: str, num_classes: int) -> nn.Module:
    """A teacher from a checkpoint file (a classifier of this data) or a pretrained name."""
    model = open_model(name)
    if model.num_classes != num_classes:
        raise VitzooError(
            f"the teacher {name} predicts {model.num_classes} classes, the data has "
            f"{num_classes}: fine-tune a teacher on this data first and pass its checkpoint"
        )
    return model


def _write_examples(dataset: LabelledImages, directory: Path, *, seed: int,
                    count: int = 4) -> None:
    """A few evaluation images as PNG files, to try ``vitzoo predict`` on.

    A random sample (the run's seed) rather than the first images: the digits' test split opens
    with several of its hardest images, which would misrepresent the model.
    """
    try:
        from PIL import Image
    except ImportError:
        return
    directory.mkdir(parents=True, exist_ok=True)
    size = len(cast(Sized, dataset))  # map-style: it has __len__
    picked = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:count]
    for index in sorted(picked.tolist()):
        image, label = dataset[index]
        Image.fromarray(image[..., 0]).save(directory / f"test_{index:03d}_label_{label}.png")
