"""Building modules without running their random initialisers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["skip_init"]

_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
                   "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_")


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Build modules without running their random initialisers (the weights are loaded next).

    The parameters are allocated but not written; everything that is not loaded afterwards is
    initialised explicitly with ``init_weights(only=...)``. Every initialiser of vitzoo and of
    ``torch.nn`` modules goes through ``torch.nn.init``, so patching it covers them all (not
    thread-safe: build models in one thread at a time while it is active).
    """
    def keep(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return tensor

    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}
    try:
        for name in _INIT_FUNCTIONS:
            setattr(nn.init, name, keep)
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)
