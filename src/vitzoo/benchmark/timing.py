"""Interleaved timing: one timed round of each candidate, repeated; paired ratios compared.

Slow drifts of the machine (frequency, other processes) then hit every candidate of a round
alike, and ratios are taken round by round (:func:`paired_ratio`), so a drift between rounds
cancels out. The order within a round is shuffled (seeded): a candidate's time depends on
what ran just before it (the allocator's and caches' state), which a fixed order would turn
into a bias of a few percent.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping

import torch

from .flops import synchronize

__all__ = ["interleaved", "median", "paired_ratio"]


def _once(call: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    call()
    synchronize(device)
    return time.perf_counter() - start


def interleaved(candidates: Mapping[str, Callable[[], object]], *, repeats: int, warmup: int = 1,
                device: torch.device | str = "cpu", min_round_s: float = 0.0, seed: int = 0
                ) -> dict[str, list[float]]:
    """Seconds per call of each candidate, one sample per round (sample ``i`` of every
    candidate comes from round ``i``).

    Each candidate is called ``warmup`` times first (compilation happens there); a round then
    calls each in turn, in an order shuffled with ``seed``, ``iters`` times back to back where
    ``iters`` makes the slowest round at least ``min_round_s`` long, and records the mean
    seconds per call.
    """
    device = torch.device(device)
    slowest = 0.0
    for call in candidates.values():
        for _ in range(max(warmup, 1)):
            last = _once(call, device)
        slowest = max(slowest, last)  # the last warm-up call: compilation is done by then
    iters = max(1, int(min_round_s / slowest)) if slowest > 0 else 1
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    order = list(candidates.items())
    shuffle = random.Random(seed).shuffle
    for _ in range(repeats):
        shuffle(order)
        for name, call in order:
            total = sum(_once(call, device) for _ in range(iters))
            samples[name].append(total / iters)
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(numerator: list[float], denominator: list[float]
                 ) -> tuple[float, float, float]:
    """The median and quartiles over rounds of ``numerator[i] / denominator[i]``.

    Both lists come from the same rounds of :func:`interleaved`; with fewer than two rounds
    the quartiles equal the median.
    """
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError("paired ratios need samples from the same rounds")
    ratios = sorted(a / b for a, b in zip(numerator, denominator, strict=True))
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    q1, mid, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return statistics.median(ratios), q1, q3
