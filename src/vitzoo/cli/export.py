"""``vitzoo export MODEL OUT``: an ONNX file checked in onnxruntime, or a torch.export program."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from .._utils import atomic_path
from ..errors import ConfigError
from ..export import export_onnx, export_program
from ..factory import open_model

_FORMATS = (".onnx", ".pt2")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "export", help="export a model to ONNX (or a torch.export program)",
        description="Export MODEL's inference forward pass (images -> logits) with a dynamic "
                    "batch dimension. OUT's suffix picks the format: .onnx (checked in "
                    "onnxruntime against PyTorch, 1e-4, when onnxruntime is installed) or .pt2 "
                    "(torch.export.save). The file is written atomically.",
    )
    parser.add_argument("model", help="checkpoint file or directory, or NAME[.TAG]")
    parser.add_argument("out", help="output file (.onnx or .pt2)")
    parser.add_argument("--dynamic-size", action="store_true",
                        help="any image height and width at run time (builds the model with "
                             "dynamic_img_size=True)")
    parser.add_argument("--img-size", type=_image_size, metavar="N|HxW",
                        help="build the model for this image size (default: the checkpoint's; "
                             "the position table is resampled at load time)")
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help="a fixed batch size (default: any batch size at run time)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--no-verify", action="store_true",
                        help="do not run the ONNX file in onnxruntime")
    parser.set_defaults(run=run)


def _image_size(text: str) -> int | tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not N or HxW") from None
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not N or HxW")
    return sizes[0] if len(sizes) == 1 else (sizes[0], sizes[1])


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in _FORMATS:
        raise ConfigError(f"cannot tell the format of {out}: name it .onnx (ONNX) or .pt2 "
                          "(torch.export program)")
    overrides: dict[str, Any] = {}  # open_model's **overrides
    if args.img_size is not None:
        overrides["img_size"] = args.img_size
    if args.dynamic_size:
        overrides["dynamic_img_size"] = True
    model = open_model(args.model, **overrides).eval()
    shape = dict(batch_size=args.batch_size or 1, dynamic_batch=args.batch_size is None,
                 dynamic_size=args.dynamic_size)
    if out.suffix.lower() == ".pt2":
        program = export_program(model, **shape)
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            torch.export.save(program, f)  # a file object: the temporary name is not .pt2
        print(f"wrote {out} (torch.export program)")
        return 0
    result = export_onnx(model, out, opset=args.opset, verify=False if args.no_verify else None,
                         **shape)
    dims = ", ".join(str(d) for d in result.input_shape)
    print(f"wrote {out} (ONNX opset {result.opset}, input images ({dims}))")
    if result.verified:
        shapes = ", ".join("x".join(map(str, s)) for s in result.checked_shapes)
        print(f"onnxruntime matches PyTorch to {result.max_abs_diff:.2g} at {shapes}")
    elif not args.no_verify:
        print('not verified: onnxruntime is not installed (pip install "vitzoo[export]")')
    return 0
