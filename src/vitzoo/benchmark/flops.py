"""The matrix multiplies of one ViT forward pass, their FLOPs, and the machine's FLOP/s at them.

The definition (shared by the benchmark suite and the inference work): for one forward at batch
``B`` every matrix multiply is listed: the patch embedding as a GEMM ``(B*N, C*p*p) x (C*p*p, D)``,
per block qkv ``(B*T, D) x (D, 3D)``, attention ``Q @ K^T`` and ``A @ V`` as batched matmuls of
``(B*heads, T, hd)`` shapes, proj ``(B*T, D) x (D, D)``, fc1 and fc2, then the head. A GEMM of
``(M, K) x (K, N)`` costs ``2*M*N*K`` FLOPs. "Matmul FLOP/s" is the total FLOPs of that list
divided by the median time to run exactly those matmuls back to back (``torch.addmm`` for the
linears with bias, ``torch.bmm`` for attention) with the same threads and dtype.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..config import ViTConfig
from ..errors import ConfigError

__all__ = ["Gemm", "gemm_list", "matmul_call", "matmul_seconds", "model_flops", "synchronize"]


@dataclass(frozen=True)
class Gemm:
    """One matrix multiply ``(batch, m, k) x (batch, k, n)``: a linear layer's (``batch`` is 1,
    ``bias`` whether it has one) or attention's batched matmul (``batched``)."""

    name: str
    m: int
    k: int
    n: int
    batch: int = 1
    bias: bool = True
    batched: bool = False

    @property
    def flops(self) -> int:
        return 2 * self.batch * self.m * self.n * self.k


def _attention(prefix: str, rows: int, q_len: int, kv_len: int, dim: int, heads: int
               ) -> list[Gemm]:
    hd = dim // heads
    return [Gemm(f"{prefix}q@k^T", q_len, hd, kv_len, batch=rows * heads, bias=False,
                 batched=True),
            Gemm(f"{prefix}a@v", q_len, kv_len, hd, batch=rows * heads, bias=False,
                 batched=True)]


def _block(cfg: ViTConfig, i: int, rows: int) -> list[Gemm]:
    d, t, hidden = cfg.embed_dim, cfg.num_patches + cfg.num_prefix_tokens, cfg.mlp_hidden_dim
    fc1 = hidden * (2 if cfg.mlp_layer == "swiglu" else 1)  # SwiGLU packs both halves in fc1
    return [Gemm(f"blocks.{i}.attn.qkv", rows * t, d, 3 * d, bias=cfg.qkv_bias),
            *_attention(f"blocks.{i}.attn.", rows, t, t, d, cfg.num_heads),
            Gemm(f"blocks.{i}.attn.proj", rows * t, d, d),
            Gemm(f"blocks.{i}.mlp.fc1", rows * t, d, fc1),
            Gemm(f"blocks.{i}.mlp.fc2", rows * t, hidden, d)]


def _map_head(cfg: ViTConfig, rows: int) -> list[Gemm]:
    """big_vision's MAP pooling: one probe query attends over all tokens, then an MLP."""
    d, t = cfg.embed_dim, cfg.num_patches + cfg.num_prefix_tokens
    return [Gemm("attn_pool.q", rows, d, d), Gemm("attn_pool.kv", rows * t, d, 2 * d),
            *_attention("attn_pool.", rows, 1, t, d, cfg.num_heads),
            Gemm("attn_pool.proj", rows, d, d),
            Gemm("attn_pool.mlp.fc1", rows, d, cfg.mlp_hidden_dim),
            Gemm("attn_pool.mlp.fc2", rows, cfg.mlp_hidden_dim, d)]


def gemm_list(cfg: ViTConfig, batch: int) -> list[Gemm]:
    """Every matrix multiply of one forward pass of ``cfg`` at batch ``batch``, in order.

    Raises:
        ConfigError: a hybrid (ResNet stem) config, whose convolutions are not GEMMs here.
    """
    if cfg.backbone_layers is not None:
        raise ConfigError("the GEMM list covers plain ViTs; a hybrid's ResNet stem is not a "
                          "list of matrix multiplies")
    if batch < 1:
        raise ConfigError(f"batch must be at least 1, got {batch}")
    ph, pw = cfg.patch_size
    gemms = [Gemm("patch_embed", batch * cfg.num_patches, cfg.in_chans * ph * pw, cfg.embed_dim,
                  bias=cfg.patch_bias)]
    for i in range(cfg.depth):
        gemms += _block(cfg, i, batch)
    if cfg.global_pool == "map":
        gemms += _map_head(cfg, batch)
    features = cfg.embed_dim
    if cfg.representation_size:
        gemms.append(Gemm("pre_logits.fc", batch, features, cfg.representation_size))
        features = cfg.representation_size
    if cfg.num_classes:
        gemms.append(Gemm("head", batch, features, cfg.num_classes, bias=cfg.head_bias))
        if cfg.distilled:
            gemms.append(Gemm("head_dist", batch, features, cfg.num_classes,
                              bias=cfg.head_bias))
    return gemms


def model_flops(cfg: ViTConfig, batch: int) -> int:
    """FLOPs (2 per multiply-add) of the matrix multiplies of one forward at ``batch``."""
    return sum(g.flops for g in gemm_list(cfg, batch))


def _operands(gemm: Gemm, dtype: torch.dtype, device: torch.device
              ) -> Callable[[], torch.Tensor]:
    if gemm.batched:
        a = torch.randn(gemm.batch, gemm.m, gemm.k, dtype=dtype, device=device)
        b = torch.randn(gemm.batch, gemm.k, gemm.n, dtype=dtype, device=device)
        return lambda: torch.bmm(a, b)
    x = torch.randn(gemm.m, gemm.k, dtype=dtype, device=device)
    # nn.Linear's (out, in), used transposed
    weight = torch.randn(gemm.n, gemm.k, dtype=dtype, device=device)
    if not gemm.bias:
        return lambda: torch.mm(x, weight.t())
    bias = torch.randn(gemm.n, dtype=dtype, device=device)
    return lambda: torch.addmm(bias, x, weight.t())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_call(cfg: ViTConfig, batch: int, *, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu") -> Callable[[], None]:
    """A function running the GEMM list of one forward back to back (operands made once)."""
    calls = [_operands(g, dtype, torch.device(device)) for g in gemm_list(cfg, batch)]

    def run() -> None:
        for call in calls:
            call()
    return run


def matmul_seconds(cfg: ViTConfig, batch: int, *, repeats: int = 5, warmup: int = 1,
                   dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
                   ) -> list[float]:
    """Seconds to run the GEMM list of one forward back to back, once per repeat."""
    device = torch.device(device)
    run = matmul_call(cfg, batch, dtype=dtype, device=device)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times
