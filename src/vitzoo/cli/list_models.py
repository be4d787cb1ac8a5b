"""``vitzoo list [PATTERN ...]``: registered architectures, tags or aliases."""

from __future__ import annotations

import argparse
import sys

from ..registry import list_aliases, list_models, list_pretrained


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "list", help="list architectures (wildcards allowed)",
        description="List registered architectures matching shell-style wildcards.",
    )
    parser.add_argument("patterns", nargs="*", default=["*"], metavar="PATTERN",
                        help="e.g. 'vit_*_patch16_*' (default: all)")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--pretrained", action="store_true",
                       help="list every arch.tag with pretrained weights instead")
    shown.add_argument("--aliases", action="store_true",
                       help="list the short and original names with their architectures")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.pretrained:
        names = list_pretrained(args.patterns)
    elif args.aliases:
        archs = set(list_models(args.patterns))
        names = [f"{alias:<24} {target}" for alias, target in list_aliases().items()
                 if target.split(".")[0] in archs]
    else:
        names = list_models(args.patterns)
    if not names:
        print(f"vitzoo: nothing matches {' '.join(args.patterns)}; try `vitzoo list` "
              "to see every architecture", file=sys.stderr)
        return 1
    for name in names:
        print(name)
    return 0
