"""Small pieces the layers share."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules import module as _module

__all__ = ["is_square", "layer_norm", "no_pre_hooks", "overwritable", "patch_grid", "to_2tuple"]


def to_2tuple(value: int | Sequence[int]) -> tuple[int, int]:
    """``n -> (n, n)``; a ``(height, width)`` pair is returned as a tuple."""
    if isinstance(value, int):
        return (value, value)
    height, width = value
    return (int(height), int(width))


def patch_grid(size: tuple[int, int], patch_size: tuple[int, int],
               pad: bool = False) -> tuple[int, int]:
    """The patch grid ``(gh, gw)`` of a ``size`` map: rows and columns the patch does not cover
    are dropped, or, with ``pad`` (the map zero-padded to whole patches), counted."""
    if pad:
        return (-(-size[0] // patch_size[0]), -(-size[1] // patch_size[1]))
    return (size[0] // patch_size[0], size[1] // patch_size[1])


def layer_norm(dim: int) -> nn.LayerNorm:
    """The default norm of the layers: LayerNorm with eps 1e-6 (the ViT release's, flax's
    default), not PyTorch's 1e-5."""
    return nn.LayerNorm(dim, eps=1e-6)


def is_square(n: int) -> bool:
    """Whether ``n`` is a positive perfect square (a square grid of position rows)."""
    return n > 0 and math.isqrt(n) ** 2 == n


_fx_tracing = getattr(torch.fx._symbolic_trace, "is_fx_symbolic_tracing",
                      torch.fx._symbolic_trace.is_fx_tracing)


def _tracing() -> bool:
    """Inside a tracer or compiler (``torch.jit.trace``, ``torch.fx``, dynamo/export), which
    record the plain out-of-place arithmetic instead."""
    # the ignore: torch.jit.is_tracing is unannotated in torch (an ignore TorchScript would
    # compile must end its line, so the reason is here)
    return (torch.jit.is_tracing()  # type: ignore[no-untyped-call]
            or torch.compiler.is_compiling() or _fx_tracing())


def overwritable(*producers: nn.Module) -> bool:
    """Whether the caller may overwrite the output of ``producers`` (the module that made a
    tensor and the modules that returned it unchanged): no autograd is recording (evaluation
    under ``torch.no_grad`` / ``torch.inference_mode``), nothing is tracing, and no forward
    hook of theirs, or a global one, could have kept a reference to it.

    The evaluation paths then compute the same values in place, without a fresh buffer:
    at ViT-B/16 batch 8 on a 2-core CPU the buffers' page faults were about 5 % of the
    forward (see docs/speed.md). Python only: the callers check it behind
    ``if not torch.jit.is_scripting():``, which TorchScript does not compile.
    """
    if torch.is_grad_enabled() or _tracing() or _module._global_forward_hooks:
        return False
    return not any(m._forward_hooks for m in producers)


def no_pre_hooks(*modules: nn.Module) -> bool:
    """Whether no forward pre-hook, of these modules' or a global one, is set: a path that
    skips a module's ``__call__`` (computing its arithmetic directly) may skip nothing else."""
    if _module._global_forward_pre_hooks:
        return False
    return not any(m._forward_pre_hooks for m in modules)
