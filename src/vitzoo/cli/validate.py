"""``vitzoo validate MODEL DATA``: top-1 / top-5 accuracy, loss and throughput."""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from ..data import MAX_IMAGE_PIXELS, create_transform, open_dataset, resolve_data_config
from ..errors import ConfigError
from ..factory import open_model
from ..train import evaluate
from ..train.sampler import SeededDataset
from .predict import add_optimize_options, optimized


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "validate", help="evaluate a model on a dataset",
        description="Top-1/top-5 accuracy, mean cross-entropy and images/s of MODEL (a "
                    "checkpoint file or directory, or NAME[.TAG] with pretrained weights) on "
                    "the evaluation split of DATA, preprocessed as the weights expect.",
    )
    parser.add_argument("model")
    parser.add_argument("data", help="digits, cifar10:PATH, cifar100:PATH, folder:PATH or a "
                                     "directory (images of at most "
                                     f"{MAX_IMAGE_PIXELS:,} pixels)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per forward pass")
    parser.add_argument("--num-workers", type=int, default=0,
                        help="data loader worker processes")
    parser.add_argument("--resize", action="store_true",
                        help="resize straight to the input size (Google's evaluation) instead "
                             "of resize + centre crop")
    add_optimize_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.num_workers < 0:
        raise ConfigError(f"--batch-size must be at least 1 and --num-workers at least 0, got "
                          f"{args.batch_size} and {args.num_workers}")
    model: nn.Module = open_model(args.model)
    transform = create_transform(resolve_data_config(model),
                                 eval_resize="resize" if args.resize else "crop")
    data = SeededDataset(open_dataset(args.data, train=False), transform)
    if (args.compile or args.quantize is not None) and len(data):
        count = min(args.batch_size, len(data))
        example = torch.stack([data[i][0] for i in range(count)])  # (B, C, H, W)
        model = optimized(model, args, example)
    metrics = evaluate(model, data, batch_size=args.batch_size, num_workers=args.num_workers)
    print(json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    return 0
