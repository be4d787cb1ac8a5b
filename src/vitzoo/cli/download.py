"""``vitzoo download NAME... [--to DIR]``: fetch and verify weights for offline use."""

from __future__ import annotations

import argparse

from ..errors import VitzooError
from ..hub import copy_weights, resolve_weights, sha256_of
from ..pretrained import get_entry
from ..registry import resolve_name


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "download", help="fetch pretrained weights (for offline use)",
        description="Fetch and verify the weights of each NAME (arch or arch.tag). With --to, "
                    "copy them to DIR/<arch>.<tag>/ (config.json + model.safetensors); set "
                    "VITZOO_WEIGHTS_DIR=DIR on the offline machine and the same names load.",
    )
    parser.add_argument("names", nargs="+", metavar="NAME")
    parser.add_argument("--to", type=str, metavar="DIR", help="directory to copy them to")
    parser.add_argument("--source", choices=("hub", "url"),
                        help="where to fetch from (default: the Hub, then the original URL)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    for name in args.names:
        arch, tag = resolve_name(name)
        entry = get_entry(arch, tag)
        if entry is None:
            raise VitzooError(f"{arch} has no pretrained weights")
        if args.to:
            resolve_weights(entry, source=args.source)
            path = copy_weights(entry, Path(args.to))
        else:
            path = resolve_weights(entry, source=args.source)
        print(f"{entry.name}  {path}  sha256={sha256_of(path)}")
    return 0
