"""``optimize``: the fastest inference form of a model on the machine it runs on, measured.

The candidates are the eager model, ``torch.compile`` (inductor with weight freezing on CPU,
CUDA graphs through ``mode="reduce-overhead"`` on a GPU) and, when asked for, int8 dynamic
quantization of the Linears (CPU). Each runs the caller's example batch; the fastest whose
outputs match eager's within a tolerance is returned, with ``optimize_report`` saying what was
measured. What is fastest depends on the model, the batch and the machine (inductor with
freezing helps ViT-Ti/16 at batch 1 on a 2-core CPU and slows ViT-B/16 at batch 8), so nothing
is assumed.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import random
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn

from .errors import ConfigError, UnsupportedOptionError

__all__ = ["COMPILE_CHOICES", "QUANTIZE_CHOICES", "Candidate", "OptimizeReport", "optimize",
           "quantize_int8"]

logger = logging.getLogger(__name__)

COMPILE_CHOICES = ("auto", True, False)
QUANTIZE_CHOICES = (None, "int8")

# Relative tolerances: max |candidate - eager| over max(1, max |eager|). int8's catches a
# broken quantization, not rounding: the digits model of docs/api.md measures 0.11 with every
# prediction unchanged.
FLOAT_TOLERANCE = 1e-3
INT8_TOLERANCE = 0.25


@dataclass(frozen=True)
class Candidate:
    """One measured form of the model.

    Attributes:
        name: ``"eager"``, ``"compile"`` (inductor, freezing on CPU), ``"cudagraphs"``
            (inductor ``mode="reduce-overhead"``) or ``"int8"``.
        ms: median milliseconds per forward of the example (``nan`` when it failed).
        max_diff: largest absolute difference of its outputs from eager's.
        ok: within the tolerance (and it ran).
        error: why it could not run, or ``""``.
    """

    name: str
    ms: float
    max_diff: float
    ok: bool
    error: str = ""


@dataclass
class OptimizeReport:
    """What :func:`optimize` measured and chose.

    Attributes:
        applied: the chosen candidate's name.
        candidates: every candidate, measured on the same example, interleaved rounds.
        device: where the example ran.
        threads: ``torch.get_num_threads()`` during the measurement.
        example_shape: the example batch's shape.
        rounds: timed rounds per candidate (medians reported).
    """

    applied: str
    candidates: list[Candidate] = field(default_factory=list)
    device: str = "cpu"
    threads: int = 1
    example_shape: tuple[int, ...] = ()
    rounds: int = 0

    def speedup(self) -> float:
        """Eager's time over the applied candidate's."""
        times = {c.name: c.ms for c in self.candidates}
        return times["eager"] / times[self.applied]

    def describe(self) -> str:
        """One line: the choice, its speed-up and every candidate's time."""
        parts = []
        for c in self.candidates:
            if c.error:
                parts.append(f"{c.name} failed ({c.error})")
            else:
                flag = "" if c.ok else ", outside tolerance"
                parts.append(f"{c.name} {c.ms:.2f} ms (max diff {c.max_diff:.1e}{flag})")
        return (f"applied {self.applied} ({self.speedup():.2f}x eager) for input "
                f"{tuple(self.example_shape)} on {self.device}, {self.threads} threads: "
                + "; ".join(parts))


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers are int8 dynamically quantized (CPU).

    Weights are int8 per output channel; activations are quantized per batch at run time
    (``torch.ao.quantization.quantize_dynamic``; its deprecation warnings are silenced here,
    as it is still the CPU path with fbgemm / oneDNN int8 kernels in this torch). The patch
    convolution, the norms and attention's products stay float32.
    """
    device = _device_of(model)
    if device.type != "cpu":
        raise UnsupportedOptionError(f"int8 dynamic quantization runs on the CPU only; the "
                                     f"model is on {device}: move it with model.cpu() first")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*deprecated.*")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        quantized: nn.Module = quantize_dynamic(  # type: ignore[no-untyped-call]  # untyped in torch
            copy.deepcopy(model).eval(), {nn.Linear: per_channel_dynamic_qconfig},
            dtype=torch.qint8)
    return quantized


def optimize(model: nn.Module, example: torch.Tensor, *, compile: bool | str = "auto",
             quantize: str | None = None, rounds: int = 5,
             tolerance: float | None = None) -> nn.Module:
    """The fastest inference form of ``model`` for batches like ``example``, measured here.

    Args:
        model: the model (put in eval mode; it is not modified).
        example: an input batch of the shape the model will be run with, on its device.
        compile: ``"auto"`` measures the compile candidate with the others, ``True`` applies
            it (when it runs and matches eager), ``False`` leaves it out.
        quantize: ``"int8"`` adds the int8 dynamically quantized model (CPU) as a candidate.
        rounds: timed rounds per candidate, interleaved; the median counts.
        tolerance: largest accepted ``max |out - eager| / max(1, max |eager|)``; default
            1e-3 for float candidates and 0.25 for int8.

    Returns:
        The chosen module (the model itself for eager, a compiled or quantized version
        otherwise), with ``optimize_report`` (:class:`OptimizeReport`). Compiled forms fold
        the weights in (freezing): optimize again after changing them.
    """
    if compile not in COMPILE_CHOICES:
        raise ConfigError(f"compile={compile!r} is not one of 'auto', True, False")
    if quantize not in QUANTIZE_CHOICES:
        raise ConfigError(f"quantize={quantize!r} is not None or 'int8'")
    if not isinstance(example, torch.Tensor):
        raise ConfigError(f"example must be a tensor batch, got {type(example).__name__}")
    if rounds < 1:
        raise ConfigError(f"rounds must be at least 1, got {rounds}")
    model.eval()
    device = example.device
    builders = _candidates(model, device, compile=compile, quantize=quantize)
    with torch.no_grad():
        reference = model(example)
        runners, errors = _prepare(builders, example)
        times = _time(runners, example, rounds)
        candidates = [_judge(name, runners.get(name), errors.get(name, ""), times, reference,
                             example, tolerance) for name in builders]
    report = OptimizeReport(applied="eager", candidates=candidates, device=str(device),
                            threads=torch.get_num_threads(), example_shape=tuple(example.shape),
                            rounds=rounds)
    report.applied = _choose(candidates, force_compile=compile is True)
    chosen = model if report.applied == "eager" else runners[report.applied]
    chosen.optimize_report = report  # type: ignore[assignment]  # torch stub: only Tensor | Module
    logger.info("optimize: %s", report.describe())
    return chosen


def _candidates(model: nn.Module, device: torch.device, *, compile: bool | str,
                quantize: str | None) -> dict[str, Callable[[], nn.Module]]:
    builders: dict[str, Callable[[], nn.Module]] = {"eager": lambda: model}
    if compile is not False:
        if device.type == "cuda":
            builders["cudagraphs"] = lambda: cast(  # torch.compile of a Module is a Module
                nn.Module, torch.compile(model, mode="reduce-overhead"))
        else:
            builders["compile"] = lambda: cast(nn.Module, torch.compile(model))
    if quantize == "int8":
        builders["int8"] = lambda: quantize_int8(model)
    return builders


def _prepare(builders: dict[str, Callable[[], nn.Module]],
             example: torch.Tensor) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """Build each candidate and run it until warm (compilation happens here)."""
    runners: dict[str, nn.Module] = {}
    errors: dict[str, str] = {}
    for name, build in builders.items():
        compiled = name in ("compile", "cudagraphs")
        try:
            with _freezing() if compiled else contextlib.nullcontext():
                runner = build()
                for _ in range(3 if compiled else 1):
                    runner(example)
                if compiled:  # the graph for inference_mode callers, frozen too
                    _warm_inference_mode(runner, example)
        except Exception as exc:  # noqa: BLE001 - a candidate that fails is reported, not fatal
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            logger.info("optimize: %s failed: %s", name, errors[name])
            continue
        runners[name] = runner
    return runners, errors


def _warm_inference_mode(runner: nn.Module, example: torch.Tensor) -> None:
    """Compile ``runner`` for calls under ``torch.inference_mode`` as well. Dynamo guards on
    the dispatch keys of the inputs, which inference mode changes, so such a call would
    otherwise compile again at its first use, and without weight freezing (measured at
    ViT-Ti/16 batch 1: 25 ms instead of 22 ms)."""
    with torch.inference_mode():
        for _ in range(2):
            runner(example)


def _freezing() -> contextlib.AbstractContextManager[None]:
    """Inductor's weight freezing: the weights become constants of the graph (inference
    only). Inductor reads it when it compiles, which is during the warm-up calls."""
    from torch._inductor import config as inductor_config

    patch: contextlib.AbstractContextManager[None] = inductor_config.patch(freezing=True)
    return patch


def _time(runners: dict[str, nn.Module], example: torch.Tensor,
          rounds: int) -> dict[str, float]:
    """Median ms per forward, one call of each candidate per round (interleaved), in an order
    shuffled each round with a fixed seed: a forward's time depends on what ran just before it
    (the allocator's and caches' state), which a fixed order turns into a bias of a few
    percent for one candidate."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    sync: Callable[[], None] = (torch.cuda.synchronize if example.device.type == "cuda"
                                else (lambda: None))
    order = list(runners.items())
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)
        for name, runner in order:
            sync()
            start = time.perf_counter()
            runner(example)
            sync()
            samples[name].append(1e3 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in samples.items()}


def _judge(name: str, runner: nn.Module | None, error: str, times: dict[str, float],
           reference: torch.Tensor, example: torch.Tensor,
           tolerance: float | None) -> Candidate:
    if runner is None:
        return Candidate(name, float("nan"), float("nan"), ok=False, error=error)
    out = runner(example)
    diff = (out.float() - reference.float()).abs().max().item() if out.numel() else 0.0
    scale = max(1.0, reference.float().abs().max().item() if reference.numel() else 0.0)
    limit = tolerance if tolerance is not None else (
        INT8_TOLERANCE if name == "int8" else FLOAT_TOLERANCE)
    ok = out.shape == reference.shape and diff <= limit * scale
    return Candidate(name, times[name], diff, ok=ok)


def _choose(candidates: list[Candidate], *, force_compile: bool) -> str:
    good = [c for c in candidates if c.ok or c.name == "eager"]
    if force_compile:
        compiled = [c for c in good if c.name in ("compile", "cudagraphs")]
        if compiled:
            return compiled[0].name
        failed = [c for c in candidates if c.name in ("compile", "cudagraphs")]
        why = failed[0].error or f"outputs differ from eager's by {failed[0].max_diff:.2e}"
        raise UnsupportedOptionError(f"compile=True, but the compiled model is unusable: {why}")
    return min(good, key=lambda c: c.ms).name


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")
