"""One reusable scratch buffer per thread for the evaluation fast paths on CPU.

The MLP's hidden activations (``tokens x 4D``, 19 MB per block for ViT-B/16 at batch 8) are
the largest tensor of a forward. A fresh one per block costs page faults: glibc maps it, the
forward frees it, glibc hands it back to the kernel, and the next block faults it in again.
The evaluation path of :class:`~vitzoo.layers.Mlp` writes them into this buffer instead, which
lives as long as the thread, grows to the largest request it served, and never leaves the
module that asked for it (the caller consumes it before returning).

Requests above the limit (64 MiB by default, :func:`set_workspace_limit`) get ``None`` and the
caller allocates as usual, so a large batch does not leave a large buffer behind.
:func:`release_workspace` frees every thread's buffers. Python only: TorchScript compiles none
of the callers' branches that use it.
"""

from __future__ import annotations

import threading
import weakref

import torch

from ..errors import ConfigError

__all__ = ["DEFAULT_WORKSPACE_LIMIT", "release_workspace", "scratch", "set_workspace_limit",
           "workspace_bytes"]

DEFAULT_WORKSPACE_LIMIT = 64 * 2**20


class _Buffers:
    """One thread's buffers by (dtype, made under inference mode). The threads' holders are
    weakly referenced, so :func:`release_workspace` reaches the live threads' buffers only and
    a thread's buffers go with it."""

    __slots__ = ("by_key", "__weakref__")

    def __init__(self) -> None:
        self.by_key: dict[tuple[torch.dtype, bool], torch.Tensor] = {}


_limit = DEFAULT_WORKSPACE_LIMIT
_local = threading.local()
_lock = threading.Lock()
_all_buffers: weakref.WeakSet[_Buffers] = weakref.WeakSet()


def _own_buffers() -> _Buffers:
    buffers: _Buffers | None = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = _Buffers()
        with _lock:
            _all_buffers.add(buffers)
    return buffers


def scratch(numel: int, like: torch.Tensor) -> torch.Tensor | None:
    """A contiguous 1-D tensor of ``numel`` elements of ``like``'s dtype, owned by the calling
    thread and handed out again by its next call: its contents are garbage, and the caller must
    be done with it before anything else can call :func:`scratch` on this thread.

    ``None`` when ``like`` is not on the CPU, when ``numel`` elements exceed the limit, or
    when the workspace is disabled (limit 0). A buffer made under ``torch.inference_mode``
    (an inference tensor) is never handed out outside it, nor the other way round.
    """
    nbytes = numel * like.element_size()
    if like.device.type != "cpu" or nbytes > _limit or numel <= 0:
        return None
    key = (like.dtype, torch.is_inference_mode_enabled())
    buffers = _own_buffers().by_key
    buf = buffers.get(key)
    if buf is None or buf.numel() < numel:
        buffers.pop(key, None)  # free the smaller one before making the larger
        buf = buffers[key] = torch.empty(numel, dtype=like.dtype)
    return buf[:numel]


def set_workspace_limit(nbytes: int) -> int:
    """Set the largest buffer :func:`scratch` keeps per thread and dtype, in bytes; 0 turns
    the workspace off. Buffers above the new limit are freed. Returns the previous limit."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ConfigError(f"the workspace limit is a number of bytes >= 0 (0 turns it off), "
                         f"got {nbytes!r}")
    global _limit
    previous, _limit = _limit, nbytes
    with _lock:
        for buffers in list(_all_buffers):
            for key, buf in list(buffers.by_key.items()):
                if buf.numel() * buf.element_size() > nbytes:
                    buffers.by_key.pop(key, None)
    return previous


def release_workspace() -> None:
    """Free every thread's scratch buffers; the next evaluation forward makes them again."""
    with _lock:
        for buffers in list(_all_buffers):
            buffers.by_key.clear()


def workspace_bytes() -> int:
    """The bytes the scratch buffers of all live threads hold."""
    with _lock:
        return sum(b.numel() * b.element_size()
                   for buffers in list(_all_buffers) for b in list(buffers.by_key.values()))
