"""Forward time of the SDPA and math attention paths (and timm's, when installed).

    python benchmarks/bench_attention.py --model vit_base_patch16_224 --batch 8

The candidates share the same weights and run interleaved (one forward of each per round),
so slow drifts of the machine hit all of them alike. Prints the median seconds per forward
and the ratios to the SDPA path, all from one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import vitzoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()

    sdpa = vitzoo.create_model(args.model, num_classes=1000).eval()
    math_model = vitzoo.create_model(args.model, num_classes=1000, attn_impl="math").eval()
    math_model.load_state_dict(sdpa.state_dict())
    candidates = {"vitzoo sdpa": sdpa, "vitzoo math": math_model}
    try:
        import timm
    except ImportError:
        timm = None
    if timm is not None:
        peer = timm.create_model(args.model, pretrained=False, num_classes=1000).eval()
        peer.load_state_dict(sdpa.state_dict())
        candidates["timm"] = peer

    x = torch.randn(args.batch, 3, *sdpa.cfg.img_size)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    with torch.inference_mode():
        reference = sdpa(x)
        for name, model in candidates.items():  # warm-up, and a check that all agree
            diff = (model(x) - reference).abs().max().item()
            print(f"  {name:<12} max |logits - sdpa| = {diff:.2e}")
        for _ in range(args.rounds):
            for name, model in candidates.items():
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)

    size = sdpa.cfg.img_size
    print(f"{args.model}, batch {args.batch}, {size[0]}x{size[1]}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} interleaved rounds")
    base = statistics.median(times["vitzoo sdpa"])
    for name, samples in times.items():
        seconds = statistics.median(samples)
        print(f"  {name:<12} {seconds * 1000:8.1f} ms/forward   {seconds / base:5.2f}x sdpa")


if __name__ == "__main__":
    main()
