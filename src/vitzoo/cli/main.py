"""``vitzoo``: the entry point; each subcommand lives in a module of its own."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import VitzooError
from . import (
    attention,
    benchmark,
    cache,
    convert,
    download,
    export,
    finetune,
    info,
    list_models,
    predict,
    validate,
)

_COMMANDS = (list_models, info, convert, download, cache, finetune, validate, predict, export,
             attention, benchmark)


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append its default to the help of every option whose default is a value (not None,
    not a flag's False), unless its help already says it."""
    for action in parser._actions:
        default = action.default
        if (not action.option_strings or action.nargs == 0 or default is None
                or default is argparse.SUPPRESS or "default" in (action.help or "")):
            continue
        shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else default
        text = f"default: {shown}".replace("%", "%%")
        action.help = f"{action.help} ({text})" if action.help else text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitzoo",
        description="Vision Transformer model zoo: list, inspect, convert, fine-tune, evaluate, "
                    "run, export, explain and benchmark ViT/DeiT models.",
    )
    parser.add_argument("--version", action="version", version=f"vitzoo {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for command in _COMMANDS:
        command.add_parser(commands)
    for sub in commands.choices.values():
        _show_defaults(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except VitzooError as err:
        print(f"vitzoo: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `vitzoo list | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
