"""Interleaved timing: one timed round of each candidate in turn, repeated; medians compared.

Slow drifts of the machine (frequency, other processes) then hit every candidate alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch

from .flops import synchronize

__all__ = ["interleaved", "median"]


def _once(call: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    call()
    synchronize(device)
    return time.perf_counter() - start


def interleaved(candidates: Mapping[str, Callable[[], object]], *, repeats: int, warmup: int = 1,
                device: torch.device | str = "cpu", min_round_s: float = 0.0
                ) -> dict[str, list[float]]:
    """Seconds per call of each candidate, one sample per round.

    Each candidate is called ``warmup`` times first (compilation happens there); a round then
    calls each in turn, ``iters`` times back to back where ``iters`` makes the slowest round at
    least ``min_round_s`` long, and records the mean seconds per call.
    """
    device = torch.device(device)
    slowest = 0.0
    for call in candidates.values():
        for _ in range(max(warmup, 1)):
            last = _once(call, device)
        slowest = max(slowest, last)  # the last warm-up call: compilation is done by then
    iters = max(1, int(min_round_s / slowest)) if slowest > 0 else 1
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, call in candidates.items():
            total = sum(_once(call, device) for _ in range(iters))
            samples[name].append(total / iters)
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)
