"""``vitzoo convert SRC DST``: Google ``.npz`` <-> vitzoo ``.safetensors``."""

from __future__ import annotations

import argparse
import sys
import time

from ..checkpoints import convert_checkpoint


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "convert", help="convert a Google .npz to vitzoo safetensors, or back",
        description="Convert a checkpoint; the output format follows DST's suffix "
                    "(.safetensors or .npz). The output is written atomically: a failed "
                    "conversion leaves nothing behind.",
    )
    parser.add_argument("src", help="Google .npz, vitzoo .safetensors or hub directory")
    parser.add_argument("dst", help="output file (.safetensors or .npz)")
    parser.add_argument("--verify", action="store_true",
                        help="check the result against Google's forward pass in NumPy (1e-5)")
    parser.add_argument("--to", dest="target_format", choices=("vitzoo", "jax_npz", "hf"),
                        help="output format (default: from DST's suffix; 'hf' writes a "
                             "transformers directory)")
    parser.add_argument("--layout", choices=("vision_transformer", "big_vision"),
                        help="Google layout of an .npz output (default: the original one)")
    parser.add_argument("--img-size", type=int, metavar="N",
                        help="image size of a sin-cos checkpoint (it has no position table)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(run=run)


class _ProgressBar:
    """A one-line progress bar on stderr, shown only for interactive terminals."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (done < total and now - self.last < 0.1):
            return
        self.last = now
        filled = int(30 * done / max(total, 1))
        sys.stderr.write(f"\r  converting [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    out = convert_checkpoint(args.src, args.dst, target_format=args.target_format,
                             layout=args.layout, img_size=args.img_size,
                             verify=args.verify, progress=_ProgressBar(not args.quiet))
    took = time.perf_counter() - start
    checked = " (verified against Google's forward pass, 1e-5)" if args.verify else ""
    print(f"wrote {out} in {took:.1f} s{checked}")
    return 0
