"""Inference images/s of vitzoo against timm and transformers, and as a fraction of the
machine's matmul FLOP/s at the model's own GEMM shapes.

    python benchmarks/bench_inference.py --model vit_base_patch16_224 --batch 8 --threads 2

Identical weights everywhere (timm loads vitzoo's state dict, transformers' ViT gets it in its
own names). Candidates run interleaved, one forward of each per round, under
``torch.inference_mode``; medians over the rounds. The matmul figure runs exactly the GEMMs of
one forward back to back (``torch.addmm`` with bias for the Linears and the patch embedding as
a GEMM, ``torch.bmm`` for Q K^T and A V over batch x heads), same threads and dtype; a model's
fraction is its matmul FLOPs x images/s over that rate. ``--optimize`` adds vitzoo.optimize's
choice, ``--int8`` the int8 dynamically quantized model.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
import warnings
from collections.abc import Callable

import torch

import vitzoo
from vitzoo.adapters.hf_transformers import from_vitzoo


def gemm_shapes(cfg: vitzoo.ViTConfig, batch: int) -> list[tuple[str, int, int, int, int]]:
    """``(kind, count, M, N, K)`` for every matmul of one forward: ``count`` products of
    ``(M, K) x (K, N)``; kind ``"mm"`` (a Linear) or ``"bmm"`` (batched over B x heads)."""
    gh, gw = cfg.img_size[0] // cfg.patch_size[0], cfg.img_size[1] // cfg.patch_size[1]
    n = gh * gw
    t = n + cfg.num_prefix_tokens
    d, hidden, heads = cfg.embed_dim, cfg.mlp_hidden_dim, cfg.num_heads
    patch_k = cfg.in_chans * cfg.patch_size[0] * cfg.patch_size[1]
    rows = batch * t
    shapes = [("mm", 1, batch * n, d, patch_k)]
    for _ in range(cfg.depth):
        shapes += [("mm", 1, rows, 3 * d, d), ("bmm", batch * heads, t, t, d // heads),
                   ("bmm", batch * heads, t, d // heads, t), ("mm", 1, rows, d, d),
                   ("mm", 1, rows, hidden, d), ("mm", 1, rows, d, hidden)]
    if cfg.num_classes:
        shapes.append(("mm", 1, batch, cfg.num_classes, d))
    return shapes


def matmul_flops(shapes: list[tuple[str, int, int, int, int]]) -> float:
    return float(sum(2 * count * m * n * k for _, count, m, n, k in shapes))


def matmul_runner(shapes: list[tuple[str, int, int, int, int]]) -> Callable[[], None]:
    """Exactly those matmuls, back to back, on random operands made up front."""
    ops = []
    for kind, count, m, n, k in shapes:
        if kind == "mm":
            ops.append((torch.addmm, (torch.randn(n), torch.randn(m, k), torch.randn(n, k).t())))
        else:
            ops.append((torch.bmm, (torch.randn(count, m, k), torch.randn(count, k, n))))

    def run() -> None:
        for fn, operands in ops:
            fn(*operands)
    return run


def peers(model: vitzoo.VisionTransformer, name: str) -> dict[str, torch.nn.Module]:
    out: dict[str, torch.nn.Module] = {}
    try:
        import timm
        peer = timm.create_model(name, pretrained=False, num_classes=model.num_classes).eval()
        peer.load_state_dict(model.state_dict())
        out["timm"] = peer
    except ImportError:
        print("  (timm not importable: skipped)")
    try:
        from transformers import ViTConfig, ViTForImageClassification
    except ImportError:
        print("  (transformers not importable: skipped)")
        return out
    cfg = model.cfg
    hf_cfg = ViTConfig(hidden_size=cfg.embed_dim, num_hidden_layers=cfg.depth,
                       num_attention_heads=cfg.num_heads, intermediate_size=cfg.mlp_hidden_dim,
                       hidden_act="gelu" if cfg.gelu_approximate == "none" else
                       "gelu_pytorch_tanh", layer_norm_eps=cfg.norm_eps,
                       image_size=cfg.img_size[0], patch_size=cfg.patch_size[0],
                       num_labels=cfg.num_classes, qkv_bias=cfg.qkv_bias,
                       attn_implementation="sdpa")
    hf = ViTForImageClassification(hf_cfg).eval()
    state, _ = from_vitzoo(model.state_dict(), distilled=False)
    if set(state) != set(hf.state_dict()):  # transformers 5 renamed the modules
        state = {_hf5_name(k): v for k, v in state.items()}
    hf.load_state_dict(state, strict=True)

    class Logits(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(pixel_values=x).logits
    out["transformers"] = Logits(hf)
    return out


HF5_RENAMES = [(r"^vit\.encoder\.layer\.", "vit.layers."),
               (r"attention\.attention\.query", "attention.q_proj"),
               (r"attention\.attention\.key", "attention.k_proj"),
               (r"attention\.attention\.value", "attention.v_proj"),
               (r"attention\.output\.dense", "attention.o_proj"),
               (r"intermediate\.dense", "mlp.fc1"), (r"\.output\.dense", ".mlp.fc2")]


def _hf5_name(key: str) -> str:
    for pattern, replacement in HF5_RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def interleaved(runners: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():  # warm-up
        run()
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(samples) for name, samples in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--optimize", action="store_true", help="add vitzoo.optimize's choice")
    parser.add_argument("--int8", action="store_true", help="add the int8 quantized model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = vitzoo.create_model(args.model, num_classes=1000).eval()
    x = torch.randn(args.batch, 3, *model.cfg.img_size)
    candidates: dict[str, torch.nn.Module] = {"vitzoo": model, **peers(model, args.model)}
    with torch.inference_mode():
        if args.int8:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                candidates["vitzoo int8"] = vitzoo.quantize_int8(model)
        if args.optimize:
            chosen = vitzoo.optimize(model, x, quantize="int8" if args.int8 else None)
            print(f"  optimize: {chosen.optimize_report.describe()}")
            candidates["vitzoo optimize"] = chosen
        reference = model(x)
        for name, candidate in candidates.items():
            diff = (candidate(x) - reference).abs().max().item()
            print(f"  {name:<16} max |logits - vitzoo| = {diff:.2e}")
        shapes = gemm_shapes(model.cfg, args.batch)
        runners: dict[str, Callable[[], object]] = {
            name: (lambda c=candidate: c(x)) for name, candidate in candidates.items()}
        runners["matmuls"] = matmul_runner(shapes)
        times = interleaved(runners, args.rounds)
    flops = matmul_flops(shapes)
    rate = flops / times["matmuls"]
    print(f"{args.model}, batch {args.batch}, float32, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} interleaved rounds")
    print(f"  matmuls          {times['matmuls'] * 1e3:8.1f} ms   {rate / 1e9:6.1f} GFLOP/s "
          f"({flops / 1e9:.1f} GFLOP per forward)")
    for name in candidates:
        seconds = times[name]
        ips = args.batch / seconds
        ratios = "   ".join(f"{times[other] / seconds:5.3f}x {other}" for other in candidates
                           if other != name and other in ("timm", "transformers"))
        print(f"  {name:<16} {seconds * 1e3:8.1f} ms   {ips:7.2f} img/s   "
              f"{flops / seconds / rate:5.3f} of matmul FLOP/s   {ratios}")


if __name__ == "__main__":
    main()
