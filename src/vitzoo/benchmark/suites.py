"""The in-process suites: inference, training step and matmul FLOP/s."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

import torch
from torch import nn

from ..models import VisionTransformer
from ..optimize import optimize, quantize_int8
from .flops import matmul_call, matmul_seconds, model_flops
from .machine import library_version
from .peers import ModelSpec, build_peer, forward_of
from .report import new_row, with_samples
from .timing import interleaved, median

__all__ = ["inference_rows", "matmul_rows", "train_rows"]


def _variants(model: nn.Module, library: str, compile_: bool
              ) -> dict[str, Callable[[torch.Tensor], torch.Tensor] | str]:
    """The ways to run ``model`` (a string: why that way has no figures)."""
    ways: dict[str, Any] = {"eager": forward_of(library, model)}
    if compile_:
        # torch.compile of a module is a module (OptimizedModule); its stub says a callable
        ways["compile"] = forward_of(library, cast(nn.Module, torch.compile(model)))
    return ways


def _optimized(model: nn.Module, x: torch.Tensor) -> tuple[str, Any]:
    """``vitzoo.optimize`` of a copy of ``model`` for batches like ``x`` (measured per batch,
    as its choice depends on it): the row's variant, naming the choice, and the way to run it
    (or why it failed)."""
    try:
        done = optimize(copy.deepcopy(model), x)  # eager stays as it was
    except Exception as err:  # noqa: BLE001 - reported in the row
        return "optimize", f"failed: {type(err).__name__}: {str(err).splitlines()[0][:160]}"
    report = getattr(done, "optimize_report", None)
    return (f"optimize ({report.applied})" if report is not None else "optimize"), done


def _int8(model: nn.Module, device: str, dtype: torch.dtype) -> Any:
    """``vitzoo.quantize_int8`` of a copy of ``model`` (CPU float32 only), or why not."""
    if device != "cpu" or dtype != torch.float32:
        return "skipped: int8 dynamic quantization is for float32 on the CPU"
    try:
        return quantize_int8(copy.deepcopy(model))
    except Exception as err:  # noqa: BLE001 - reported in the row
        return f"failed: {type(err).__name__}: {str(err).splitlines()[0][:160]}"


def _candidates(spec: ModelSpec, libraries: Sequence[str], device: str, dtype: torch.dtype,
                compile_: bool) -> tuple[VisionTransformer, dict[tuple[str, str], Any]]:
    torch.manual_seed(0)
    model = spec.build().eval().to(device, dtype)
    found: dict[tuple[str, str], Any] = {}
    for library in libraries:
        peer = build_peer(library, spec, model)
        if peer is None:
            found[(library, "eager")] = "not installed"
            continue
        for variant, way in _variants(peer.eval(), library, compile_).items():
            found[(library, variant)] = way
    return model, found


def _check(found: dict[tuple[str, str], Any], x: torch.Tensor, reference: torch.Tensor
           ) -> dict[tuple[str, str], float]:
    """Each runnable way's largest logit difference from vitzoo's; a way that fails (a
    compiler missing, say) becomes its error message."""
    diffs = {}
    for key, way in list(found.items()):
        if not callable(way):
            continue
        try:
            diffs[key] = (way(x).float() - reference).abs().max().item()
        except Exception as err:  # noqa: BLE001 - reported in the row, the others still run
            found[key] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:160]}"
    return diffs


def inference_rows(spec: ModelSpec, *, libraries: Sequence[str], batches: Sequence[int],
                   dtype: torch.dtype, device: str, repeats: int, warmup: int, threads: int,
                   compile_: bool = False, optimize: bool = False, min_round_s: float = 0.2,
                   matmul: bool = True, int8: bool = False) -> list[dict[str, Any]]:
    """Images/s and latency of every library's forward, per batch size, interleaved; with
    ``matmul``, the model's GEMM list runs in the same rounds (the matmul suite's rows), so
    the fraction of matmul FLOP/s compares figures measured side by side; with ``int8``,
    vitzoo's int8 dynamically quantized model runs in them too (variant ``int8``)."""
    model, shared = _candidates(spec, libraries, device, dtype, compile_)
    cfg = model.cfg
    if int8:
        shared[("vitzoo", "int8")] = _int8(model, device, dtype)
    common = {"suite": "inference", "model": spec.label, "dtype": str(dtype).split(".")[-1],
              "threads": threads, "repeats": repeats}
    rows = []
    for batch in batches:
        x = torch.randn(batch, cfg.in_chans, *cfg.img_size, device=device, dtype=dtype)
        found = dict(shared)
        if optimize and "vitzoo" in libraries:
            variant, way = _optimized(model, x)
            found[("vitzoo", variant)] = way
        with torch.inference_mode():
            diffs = _check(found, x, model(x).float())
            calls: dict[str, Callable[[], object]] = {
                f"{k[0]}/{k[1]}": partial(f, x) for k, f in found.items() if callable(f)}
            if matmul:
                calls["torch/gemm"] = matmul_call(cfg, batch, dtype=dtype, device=device)
            times = interleaved(calls, repeats=repeats, warmup=warmup, device=device,
                                min_round_s=min_round_s)
        gflop = model_flops(cfg, batch) / 1e9
        if matmul:
            rows.append(_matmul_row(spec, batch, dtype, threads, repeats,
                                    median(times["torch/gemm"]), gflop,
                                    samples=times["torch/gemm"]))
        for (library, variant), way in found.items():
            if not callable(way):
                rows.append(new_row(**common, library=library, variant=variant, batch=batch,
                                    status=way))
                continue
            samples = times[f"{library}/{variant}"]
            seconds = median(samples)
            rows.append(with_samples(new_row(
                **common, library=library, variant=variant, batch=batch, seconds=seconds,
                images_per_s=batch / seconds, latency_ms=seconds * 1e3, gflop=gflop,
                gflop_per_s=gflop / seconds, max_abs_diff=diffs[(library, variant)]), samples))
    return rows


def _train_step(model: nn.Module, library: str, x: torch.Tensor, y: torch.Tensor
                ) -> Callable[[], None]:
    forward = forward_of(library, model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step() -> None:
        loss = nn.functional.cross_entropy(forward(x), y)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward untyped
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def train_rows(spec: ModelSpec, *, libraries: Sequence[str], batches: Sequence[int],
               device: str, repeats: int, warmup: int, threads: int
               ) -> list[dict[str, Any]]:
    """Training steps per second (forward, backward, SGD step) in float32, interleaved."""
    common = {"suite": "train", "model": spec.label, "dtype": "float32", "threads": threads,
              "repeats": repeats, "variant": "eager"}
    rows = []
    for batch in batches:
        torch.manual_seed(0)
        model = spec.build().to(device).train()
        cfg = model.cfg
        x = torch.randn(batch, cfg.in_chans, *cfg.img_size, device=device)
        y = torch.randint(0, cfg.num_classes, (batch,), device=device)
        steps, missing = {}, []
        for library in libraries:
            if library != "vitzoo" and library_version(library) is None:
                missing.append(library)
                continue
            peer: nn.Module
            if library == "vitzoo":
                peer = model
            else:
                built = build_peer(library, spec, model)
                assert built is not None  # installed: library_version was checked just above
                peer = built.train()
            steps[library] = _train_step(peer, library, x, y)
        times = interleaved(steps, repeats=repeats, warmup=warmup, device=device)
        for library in libraries:
            if library in missing:
                rows.append(new_row(**common, library=library, batch=batch,
                                    status="not installed"))
                continue
            seconds = median(times[library])
            rows.append(with_samples(new_row(**common, library=library, batch=batch,
                                             seconds=seconds, images_per_s=batch / seconds,
                                             latency_ms=seconds * 1e3), times[library]))
    return rows


def _matmul_row(spec: ModelSpec, batch: int, dtype: torch.dtype, threads: int, repeats: int,
                seconds: float, gflop: float, samples: list[float] | None = None
                ) -> dict[str, Any]:
    row = new_row(suite="matmul", model=spec.label, library="torch", variant="gemm",
                  dtype=str(dtype).split(".")[-1], batch=batch, threads=threads,
                  repeats=repeats, seconds=seconds, gflop=gflop, gflop_per_s=gflop / seconds,
                  latency_ms=seconds * 1e3)
    return with_samples(row, samples) if samples is not None else row


def matmul_rows(spec: ModelSpec, *, batches: Sequence[int], dtype: torch.dtype, device: str,
                repeats: int, warmup: int, threads: int) -> list[dict[str, Any]]:
    """The machine's matmul FLOP/s at the model's own GEMM shapes (see flops.py), alone (with
    the inference suite they are measured in its rounds instead)."""
    with torch.device("meta"):
        cfg = spec.build().cfg
    return [_matmul_row(spec, batch, dtype, threads, repeats,
                        median(matmul_seconds(cfg, batch, repeats=repeats, warmup=warmup,
                                              dtype=dtype, device=device)),
                        model_flops(cfg, batch) / 1e9) for batch in batches]
