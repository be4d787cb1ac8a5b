"""Inference images/s of vitzoo against timm and transformers, and as a fraction of the
machine's matmul FLOP/s at the model's own GEMM shapes: the inference suite of
``vitzoo benchmark`` for one model and batch size.

    python benchmarks/bench_inference.py --model vit_base_patch16_224 --batch 8 --threads 2
        [--rounds 8] [--optimize] [--int8]

Identical weights everywhere (timm loads vitzoo's state dict, transformers' ViT gets it in its
own names); the candidates and the model's GEMM list run in interleaved rounds, in a shuffled
order, under ``torch.inference_mode``; ratios are taken round by round (median and quartiles).
timm and transformers are measured when this Python imports them (run it with the peer
environment's interpreter). ``--optimize`` adds vitzoo.optimize's choice, ``--int8`` the int8
dynamically quantized model. The method is ``vitzoo.benchmark.suites.inference_rows``.
"""

from __future__ import annotations

import argparse

import torch

from vitzoo.benchmark import add_ratios, markdown_tables
from vitzoo.benchmark.peers import LIBRARIES, ModelSpec
from vitzoo.benchmark.suites import inference_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--optimize", action="store_true", help="add vitzoo.optimize's choice")
    parser.add_argument("--int8", action="store_true", help="add the int8 quantized model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = inference_rows(ModelSpec(args.model), libraries=LIBRARIES, batches=[args.batch],
                          dtype=torch.float32, device="cpu", repeats=args.rounds, warmup=1,
                          threads=args.threads, optimize=args.optimize, int8=args.int8)
    print(markdown_tables(add_ratios(rows)), end="")


if __name__ == "__main__":
    main()
