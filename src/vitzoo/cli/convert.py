"""``vitzoo convert SRC DST``: Google ``.npz`` <-> vitzoo ``.safetensors``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .._utils import Progress
from ..convert import convert_checkpoint
from ..errors import ConfigError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "convert", help="convert a Google .npz to vitzoo safetensors, or back",
        description="Convert a checkpoint; the output format follows DST's suffix "
                    "(.safetensors or .npz). The output is written atomically: a failed "
                    "conversion leaves nothing behind.",
    )
    parser.add_argument("src", help="Google / big_vision (SigLIP) .npz, vitzoo .safetensors, "
                                    "a hub or open_clip directory, or an original release's "
                                    "file (DINOv2, DeiT III, OpenAI CLIP .pt, timm ...)")
    parser.add_argument("dst", help="output file (.safetensors or .npz)")
    parser.add_argument("--verify", action="store_true",
                        help="check the result before writing it: against Google's forward "
                             "pass in NumPy (1e-5) for .npz sources and outputs, else against "
                             "the source's own model (1e-6)")
    parser.add_argument("--to", dest="target_format", choices=("vitzoo", "jax_npz", "hf"),
                        help="output format (default: from DST's suffix; 'hf' writes a "
                             "transformers directory)")
    parser.add_argument("--layout", choices=("vision_transformer", "big_vision"),
                        help="Google layout of an .npz output (default: the original one)")
    parser.add_argument("--img-size", type=int, metavar="N",
                        help="image size of a sin-cos checkpoint (it has no position table); "
                             "default: read from the position table, required without one")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.img_size is not None and args.img_size < 1:
        raise ConfigError(f"--img-size must be a positive number of pixels, got {args.img_size}")
    start = time.perf_counter()
    with Progress("converting", unit="array", enabled=not args.quiet) as progress:
        out = convert_checkpoint(args.src, args.dst, target_format=args.target_format,
                                 layout=args.layout, img_size=args.img_size,
                                 verify=args.verify, progress=progress)
    took = time.perf_counter() - start
    google = Path(args.src).suffix == ".npz" or Path(args.dst).suffix == ".npz"
    checked = ""
    if args.verify:
        checked = (" (verified against Google's forward pass, 1e-5)" if google
                   else " (verified: it computes what the source computes, 1e-6)")
    print(f"wrote {out} in {took:.1f} s{checked}")
    return 0
