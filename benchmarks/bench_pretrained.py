"""Time and peak memory to a ready model from a local safetensors file, each way in a fresh
process: the load suite of ``vitzoo benchmark`` for one architecture.

    python benchmarks/bench_pretrained.py [--arch vit_large_patch16_224] [--rounds 3]
        [--threads N]

The ways: vitzoo's ``create_model(name, checkpoint_path=f)``, ``load_model(f)`` and
``create_model(name, pretrained=True)`` from the cache, and, when this Python imports timm (run
it with the peer environment's interpreter), timm's ``create_model(name, pretrained=True,
pretrained_cfg_overlay=dict(file=f))`` and ``load_state_dict``. The weights are random tensors
with the real shapes, written where vitzoo finds cached weights (VITZOO_WEIGHTS_DIR, offline);
every way reads the same file; the rounds are interleaved. Peak memory is the child's VmHWM
above its size after the imports (Linux). The method is
``vitzoo.benchmark.processes.load_rows``.
"""

from __future__ import annotations

import argparse

import torch

from vitzoo.benchmark import add_ratios, markdown_tables
from vitzoo.benchmark.peers import ModelSpec
from vitzoo.benchmark.processes import load_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="vit_large_patch16_224")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per way")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    rows = add_ratios(load_rows(ModelSpec(args.arch), libraries=("vitzoo", "timm"),
                                repeats=args.rounds, threads=args.threads))
    print(markdown_tables(rows), end="")


if __name__ == "__main__":
    main()
