"""Time and peak memory of converting a Google .npz to vitzoo safetensors, against the time to
read and write the same bytes: the convert suite of ``vitzoo benchmark`` for one architecture.

    python benchmarks/bench_convert.py [--arch vit_base_patch16_224] [--verify] [--rounds 3]
        [--threads N]

A published-layout .npz of random float32 arrays with the architecture's exact shapes is
converted in fresh child processes, interleaved with the baseline (the members read and the
same bytes written, fsync'd), ``--rounds`` times each; the peak RSS is the child's VmHWM above
its size after the imports (Linux). The method is ``vitzoo.benchmark.processes.convert_rows``.
"""

from __future__ import annotations

import argparse

import torch

from vitzoo.benchmark import add_ratios, markdown_tables
from vitzoo.benchmark.peers import ModelSpec
from vitzoo.benchmark.processes import convert_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="vit_base_patch16_224")
    parser.add_argument("--verify", action="store_true",
                        help="also time convert_checkpoint's comparison with Google's forward")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per way")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    rows = add_ratios(convert_rows(ModelSpec(args.arch), repeats=args.rounds,
                                   threads=args.threads, verify=args.verify))
    print(markdown_tables(rows), end="")


if __name__ == "__main__":
    main()
