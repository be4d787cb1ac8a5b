"""``vitzoo predict MODEL IMAGE...``: the top-k classes of each image."""

from __future__ import annotations

import argparse
import sys
from typing import cast

import torch
from torch import nn

from ..data import (
    MAX_IMAGE_PIXELS,
    create_transform,
    imagenet_class_names,
    open_image,
    resolve_data_config,
)
from ..data.images import pil_image_module
from ..errors import ConfigError, VitzooError
from ..factory import open_model
from ..models import VisionTransformer
from ..optimize import OptimizeReport, optimize


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "predict", help="classify image files",
        description="Print the top-k classes (with class names when the checkpoint has them, "
                    "ImageNet-1k names for 1000-class models) of each IMAGE.",
    )
    parser.add_argument("model", help="checkpoint file or directory, or NAME[.TAG]")
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files (any format Pillow reads, at most "
                             f"{MAX_IMAGE_PIXELS:,} pixels)")
    parser.add_argument("--top-k", type=int, default=5, help="classes shown per image")
    add_optimize_options(parser)
    parser.set_defaults(run=run)


def add_optimize_options(parser: argparse.ArgumentParser) -> None:
    """``--compile`` and ``--quantize int8``: run the model as :func:`vitzoo.optimize` finds
    fastest on this machine (shared by predict and validate)."""
    parser.add_argument("--compile", action="store_true",
                        help="measure torch.compile (inductor, weights frozen on CPU; CUDA "
                             "graphs on GPU) against eager on the first batch and use the "
                             "faster that matches eager's outputs")
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="also measure int8 dynamic quantization of the Linears (CPU) "
                             "and use it when faster")


def optimized(model: nn.Module, args: argparse.Namespace, example: torch.Tensor) -> nn.Module:
    """``model`` as ``--compile`` / ``--quantize`` ask (itself without them); the choice and
    the measured times go to stderr."""
    if not args.compile and args.quantize is None:
        return model
    chosen = optimize(model, example, compile="auto" if args.compile else False,
                      quantize=args.quantize)
    report = cast(OptimizeReport, chosen.optimize_report)  # optimize() sets it
    print(f"optimize: {report.describe()}", file=sys.stderr)
    return chosen


def class_names(model: VisionTransformer) -> list[str]:
    names = (getattr(model, "pretrained_cfg", {}) or {}).get("label_names")
    if names and len(names) == model.num_classes:
        return [str(n) for n in names]
    if model.num_classes == 1000:
        return imagenet_class_names()
    return [str(i) for i in range(model.num_classes)]


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}")
    pil_image_module()  # before the model is opened: Pillow may be missing
    model = open_model(args.model).eval()
    if model.num_classes == 0:
        raise VitzooError(f"{args.model} has no classifier head (num_classes=0)")
    transform = create_transform(resolve_data_config(model))
    names = class_names(model)
    runner: nn.Module | None = None
    for path in args.images:
        image = open_image(path)  # a DatasetError naming the file for a broken one
        batch = transform(image)[None]  # (1, C, H, W)
        runner = runner if runner is not None else optimized(model, args, batch)
        with torch.no_grad():
            probs = runner(batch).softmax(dim=-1)[0]
        top = probs.topk(min(args.top_k, probs.numel()))
        ranked = ", ".join(f"{names[i]} ({100 * p:.1f}%)"
                           for p, i in zip(top.values.tolist(), top.indices.tolist(),
                                           strict=True))
        print(f"{path}: {ranked}")
    return 0
