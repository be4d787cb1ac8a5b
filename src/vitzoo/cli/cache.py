"""``vitzoo cache ls | verify | rm``: the cached pretrained weights.

Every action stays inside the two caches: names are checked before they become paths, files
that resolve outside a cache are skipped, and special files (FIFOs, devices, directories,
symbolic-link loops) are reported, never opened.
"""

from __future__ import annotations

import argparse
import os

from .._utils import file_problem
from ..hub import (
    cache_dir,
    cached_weights,
    check_cache_name,
    hf_cache_dir,
    remove_cached,
    verify_cached,
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "cache", help="list, verify or remove cached weights",
        description="Cached weights live in vitzoo's cache (VITZOO_CACHE) and the Hugging Face "
                    "cache (HF_HOME). Nothing outside them is read or removed.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    actions.add_parser("ls", help="list cached weights with their sizes")
    actions.add_parser("verify", help="check every cached file (checksums, readability)")
    rm = actions.add_parser("rm", help="remove the cached weights of NAME (arch.tag)")
    rm.add_argument("names", nargs="+", metavar="NAME")
    parser.set_defaults(run=run)


def _list() -> int:
    entries = cached_weights()
    for name, place, path in entries:
        problem = file_problem(path)
        size = "        ?    " if problem else f"{os.stat(path).st_size / 2**20:9.1f} MiB"
        print(f"{name:<55} {place:<12} {size}  {path}"
              + (f" ({problem}; `vitzoo cache verify` reports it)" if problem else ""))
    if not entries:
        print(f"no cached weights in {cache_dir()} or {hf_cache_dir()}")
    return 0


def _verify() -> int:
    bad = 0
    for name, place, path in cached_weights():
        problem = verify_cached(path)
        bad += problem is not None
        print(f"{'ok' if problem is None else 'BAD':<4} {name} ({place})"
              + (f": {problem}" if problem else ""))
    return 1 if bad else 0


def run(args: argparse.Namespace) -> int:
    if args.action == "ls":
        return _list()
    if args.action == "verify":
        return _verify()
    for name in args.names:  # every name is checked before anything is removed
        check_cache_name(name)
    status = 0
    for name in args.names:
        removed = remove_cached(name)
        for path in removed:
            print(f"removed {path}")
        if not removed:
            print(f"{name} is not cached")
            status = 1
    return status
