"""``vitzoo finetune``: the ViT release's fine-tuning recipe as one command."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

from ..errors import TrainingInterrupted
from ..train import dist
from ..train.config import PRESETS
from ..train.state import saved_step
from ..train.workflow import finetune_on


def finite_float(text: str) -> float:
    """An argparse type: a finite number (``float`` alone takes ``nan`` and ``inf``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


# Options that take a value and go to TrainConfig, in the order of --help.
_TRAIN_OPTIONS = (("steps", int), ("batch-size", int), ("micro-batch", int),
                  ("lr", finite_float), ("weight-decay", finite_float),
                  ("layer-decay", finite_float), ("warmup-steps", int), ("eval-every", int),
                  ("seed", int), ("num-workers", int), ("label-smoothing", finite_float))
_CHOICES = (("optimizer", ("sgd", "adamw")), ("schedule", ("cosine", "linear")),
            ("amp", ("auto", "off", "bf16", "fp16")), ("distill", ("soft", "hard")))
# Every option with a value, as the command line spells it, for the command that resumes.
_VALUE_OPTIONS = ("data", "model", "preset", "output", "img-size", "teacher",
                  *(name for name, _ in _TRAIN_OPTIONS), "drop-path-rate",
                  *(name for name, _ in _CHOICES))


_HELP = {
    "steps": "optimizer steps", "batch_size": "samples per optimizer step, over all processes",
    "micro_batch": "samples per forward pass on one process (the rest by accumulation)",
    "lr": "peak learning rate", "weight_decay": "decoupled weight decay",
    "layer_decay": "AdamW's layer-wise lr decay", "warmup_steps": "linear warmup steps",
    "eval_every": "steps between two evaluations", "seed": "the one seed of the run",
    "num_workers": "data loader worker processes", "label_smoothing": "label smoothing",
    "optimizer": "optimizer", "schedule": "decay after the warmup",
    "amp": "mixed precision (auto: bf16 on a GPU that has it, fp16 on other GPUs, off on CPU)",
    "distill": "DeiT distillation from --teacher",
}


def _preset_default(field: str) -> str:
    """``--help`` text for an option whose default is the preset's: each preset's value."""
    values = {name: getattr(cfg, field) for name, cfg in sorted(PRESETS.items())}
    shown = {name: "off" if value is None else value for name, value in values.items()}
    if len(set(map(repr, shown.values()))) == 1:
        default = f"default: {next(iter(shown.values()))}"
    else:
        default = "default: the preset's: " + ", ".join(f"{v} ({k})" for k, v in shown.items())
    return f"{_HELP[field]}; {default}"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "finetune", help="fine-tune a model on a dataset (works under torchrun)",
        description="Fine-tune with the recipe of Google's ViT release (preset 'vit': SGD "
                    "momentum 0.9, lr 0.03, 500 warmup steps, cosine decay, 10,000 steps, batch "
                    "512 by accumulation, clipping at 1.0, zero head) or the 'digits' preset. "
                    "Prints the test accuracy of the final weights. Run it under "
                    "`torchrun --nproc_per_node=N` for several processes. Ctrl-C saves the "
                    "last step; --resume continues from it.",
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
                        "embeddings are resampled); default: the model's")
    parser.add_argument("--teacher", help="teacher model for DeiT distillation")
    for name, kind in _TRAIN_OPTIONS:
        parser.add_argument(f"--{name}", type=kind, help=_preset_default(name.replace("-", "_")))
    parser.add_argument("--drop-path-rate", type=finite_float,
                        help="stochastic depth of the model; default: the model's (0.0 for "
                             "every registered architecture)")
    for name, choices in _CHOICES:
        parser.add_argument(f"--{name}", choices=choices,
                            help=_preset_default(name.replace("-", "_")))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    train = {name.replace("-", "_"): getattr(args, name.replace("-", "_"))
             for name in (*(n for n, _ in _TRAIN_OPTIONS), *(n for n, _ in _CHOICES))}
    model = {"img_size": args.img_size, "drop_path_rate": args.drop_path_rate}
    main_process = dist.world()[1] == 0
    step = saved_step(Path(args.output)) if args.resume else None
    if main_process and step is not None:
        print(f"resuming {args.output} from step {step}", file=sys.stderr)
    try:
        result = finetune_on(args.data, model=args.model, preset=args.preset,
                             output_dir=args.output, pretrained=args.pretrained,
                             teacher=args.teacher, resume=args.resume, overwrite=args.overwrite,
                             model_overrides={k: v for k, v in model.items() if v is not None},
                             **{k: v for k, v in train.items() if v is not None})
    except TrainingInterrupted as stop:
        if main_process:
            print(f"vitzoo: interrupted at step {stop.step}; saved {stop.output_dir}; "
                  f"continue with: {resume_command(args)}", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports Ctrl-C
    finally:
        dist.shutdown()  # the process group of a torchrun job
    if main_process:
        assert result.output_dir is not None  # finetune always sets it
        final = result.final
        print(json.dumps({"step": result.step, "test_top1": round(final.get("top1", 0.0), 2),
                          "test_top5": round(final.get("top5", 0.0), 2),
                          "test_loss": round(final.get("loss", 0.0), 4),
                          "checkpoint": str(result.output_dir / "last.safetensors")}))
        print(f"test accuracy {final.get('top1', 0.0):.2f}% after {result.step} steps; "
              f"saved {result.output_dir / 'last.safetensors'}")
    return 0


def resume_command(args: argparse.Namespace) -> str:
    """The command line that continues the run of ``args`` (``--resume``, the same options)."""
    world = dist.world()[0]
    words = (["torchrun", f"--nproc_per_node={world}", "-m", "vitzoo", "finetune"] if world > 1
             else ["vitzoo", "finetune"])
    for name in _VALUE_OPTIONS:
        value = getattr(args, name.replace("-", "_"))
        if value is not None and not (name == "data" and value == "digits"):
            words += [f"--{name}", str(value)]
    if not args.pretrained:
        words.append("--no-pretrained")
    return shlex.join([*words, "--resume"])
