"""``vitzoo finetune``: the ViT release's fine-tuning recipe as one command."""

from __future__ import annotations

import argparse
import json

from ..train import dist
from ..train.config import PRESETS
from ..train.workflow import finetune_on


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "finetune", help="fine-tune a model on a dataset (works under torchrun)",
        description="Fine-tune with the recipe of Google's ViT release (preset 'vit': SGD "
                    "momentum 0.9, lr 0.03, 500 warmup steps, cosine decay, 10,000 steps, batch "
                    "512 by accumulation, clipping at 1.0, zero head) or the 'digits' preset. "
                    "Prints the test accuracy of the final weights. Run it under "
                    "`torchrun --nproc_per_node=N` for several processes.",
    )
    parser.add_argument("--data", default="digits",
                        help="digits (bundled), cifar10[:PATH], cifar100[:PATH], folder:PATH")
    parser.add_argument("--model", help="architecture (pretrained weights are loaded) or a "
                                        "checkpoint file; default: the preset's model")
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                        help="start from random weights")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="recipe (default: digits for the digits, vit otherwise)")
    parser.add_argument("--output", default="runs/finetune", help="output directory")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over when --output holds a run (its files are removed); "
                             "without --resume or --overwrite such a directory is refused")
    parser.add_argument("--img-size", type=int, help="training resolution (position "
                                                     "embeddings are resampled)")
    parser.add_argument("--teacher", help="teacher model for DeiT distillation")
    for name, kind in (("steps", int), ("batch-size", int), ("micro-batch", int), ("lr", float),
                       ("weight-decay", float), ("layer-decay", float), ("warmup-steps", int),
                       ("eval-every", int), ("seed", int), ("num-workers", int),
                       ("label-smoothing", float), ("drop-path-rate", float)):
        parser.add_argument(f"--{name}", type=kind)
    parser.add_argument("--optimizer", choices=("sgd", "adamw"))
    parser.add_argument("--schedule", choices=("cosine", "linear"))
    parser.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"))
    parser.add_argument("--distill", choices=("soft", "hard"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    train = {k: getattr(args, k) for k in (
        "steps", "batch_size", "micro_batch", "lr", "weight_decay", "layer_decay",
        "warmup_steps", "eval_every", "seed", "num_workers", "label_smoothing", "optimizer",
        "schedule", "amp", "distill") if getattr(args, k) is not None}
    model = {k: v for k, v in (("img_size", args.img_size),
                               ("drop_path_rate", args.drop_path_rate)) if v is not None}
    try:
        result = finetune_on(args.data, model=args.model, preset=args.preset,
                             output_dir=args.output, pretrained=args.pretrained,
                             teacher=args.teacher, resume=args.resume,
                             overwrite=args.overwrite, model_overrides=model, **train)
    finally:
        dist.shutdown()  # the process group of a torchrun job
    if dist.world()[1] == 0:
        final = result.final
        print(json.dumps({"step": result.step, "test_top1": round(final.get("top1", 0.0), 2),
                          "test_top5": round(final.get("top5", 0.0), 2),
                          "test_loss": round(final.get("loss", 0.0), 4),
                          "checkpoint": str(result.output_dir / "last.safetensors")}))
        print(f"test accuracy {final.get('top1', 0.0):.2f}% after {result.step} steps; "
              f"saved {result.output_dir / 'last.safetensors'}")
    return 0
