"""Learning-rate schedule: linear warmup, then cosine or linear decay to zero."""

from __future__ import annotations

import math

__all__ = ["lr_factor"]


def lr_factor(step: int, *, total: int, warmup: int, schedule: str = "cosine") -> float:
    """The multiplier of the base lr at optimizer step ``step`` (0-based).

    Warmup: ``(step + 1) / warmup`` (never zero, so the first step moves); then the remaining
    steps decay from 1 to 0, as ``0.5 * (1 + cos(pi * p))`` or ``1 - p``.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))
