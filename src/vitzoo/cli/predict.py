"""``vitzoo predict MODEL IMAGE...``: the top-k classes of each image."""

from __future__ import annotations

import argparse

import torch

from ..data import create_transform, imagenet_class_names, resolve_data_config
from ..errors import MissingDependencyError, VitzooError
from ..factory import open_model


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "predict", help="classify image files",
        description="Print the top-k classes (with class names when the checkpoint has them, "
                    "ImageNet-1k names for 1000-class models) of each IMAGE.",
    )
    parser.add_argument("model", help="checkpoint file or directory, or NAME[.TAG]")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--top-k", type=int, default=5)
    parser.set_defaults(run=run)


def class_names(model) -> list[str]:
    names = (getattr(model, "pretrained_cfg", {}) or {}).get("label_names")
    if names and len(names) == model.num_classes:
        return [str(n) for n in names]
    if model.num_classes == 1000:
        return imagenet_class_names()
    return [str(i) for i in range(model.num_classes)]


def run(args: argparse.Namespace) -> int:
    try:
        from PIL import Image
    except ImportError as err:
        raise MissingDependencyError('vitzoo predict reads images with Pillow: '
                                     'pip install "vitzoo[image]"') \
            from err
    model = open_model(args.model).eval()
    if model.num_classes == 0:
        raise VitzooError(f"{args.model} has no classifier head (num_classes=0)")
    transform = create_transform(resolve_data_config(model))
    names = class_names(model)
    for path in args.images:
        try:
            image = Image.open(path).convert("RGB")
        except OSError as err:
            raise VitzooError(f"cannot read image {path}: {err}") from err
        with torch.no_grad():
            probs = model(transform(image)[None]).softmax(dim=-1)[0]
        top = probs.topk(min(args.top_k, probs.numel()))
        ranked = ", ".join(f"{names[i]} ({100 * p:.1f}%)"
                           for p, i in zip(top.values.tolist(), top.indices.tolist(),
                                           strict=True))
        print(f"{path}: {ranked}")
    return 0
