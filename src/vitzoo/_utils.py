"""Small helpers shared by the whole package: atomic writes, close-match suggestions,
building without initialisation, file digests, the progress display and file locks."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import filelock
import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["Progress", "atomic_path", "close_matches", "file_digest", "file_lock", "skip_init",
           "suggestion"]


# -- names ----------------------------------------------------------------------------------------
def close_matches(name: str, candidates: Iterable[str], *, n: int = 3) -> list[str]:
    """The candidates most similar to ``name``, best first (case-insensitive)."""
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    found = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.6)
    return [by_lower[key] for key in found]


def suggestion(name: str, candidates: Iterable[str]) -> str:
    """A sentence naming the close matches of ``name``, or an empty string."""
    matches = close_matches(name, candidates)
    if not matches:
        return ""
    return " Did you mean " + ", ".join(repr(m) for m in matches) + "?"


# -- files ----------------------------------------------------------------------------------------
def _new_file_mode(target: Path) -> int:
    """The permissions a plain ``open(target, "w")`` would give: the old file's, or 0666 less
    the umask for a new one."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(target.stat().st_mode)
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s directory; rename it to ``target`` when the block
    succeeds, delete it when the block raises, so a failed write leaves nothing behind (and an
    older ``target`` untouched). The file gets the permissions an ordinary write would give."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, _new_file_mode(target))
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive lock held across processes (``filelock``) on ``path``, created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(path)):
        yield


# -- building without initialisation --------------------------------------------------------------
_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
                   "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_")
_SKIP_INIT_LOCK = threading.RLock()


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Build modules without running their random initialisers (the weights are loaded next).

    The parameters are allocated but not written; everything that is not loaded afterwards is
    initialised explicitly. Every initialiser of vitzoo and of ``torch.nn`` modules goes
    through ``torch.nn.init``, so patching it covers them all. The patch is process-wide:
    builds that skip initialisation take a lock, so two of them never overlap, but a model
    built in another thread at the same moment would be left uninitialised too.
    """
    def keep(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return tensor

    with _SKIP_INIT_LOCK:
        saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}
        try:
            for name in _INIT_FUNCTIONS:
                setattr(nn.init, name, keep)
            yield
        finally:
            for name, fn in saved.items():
                setattr(nn.init, name, fn)


# -- progress -------------------------------------------------------------------------------------
class Progress:
    """The one progress display of vitzoo (tqdm on stderr), for downloads, conversion and
    training; call it with ``(done, total)``. It shows only on an interactive terminal.

    Args:
        desc: what is progressing (a file name, "converting", "training").
        unit: ``"B"`` for bytes (scaled to KiB/MiB), else the name of one item.
        enabled: False shows nothing (``--quiet``).
    """

    def __init__(self, desc: str, *, unit: str = "it", enabled: bool = True) -> None:
        self._bar = tqdm(desc=desc, unit=unit, unit_scale=unit == "B", unit_divisor=1024,
                         disable=None if enabled else True, leave=True, dynamic_ncols=True)

    def __call__(self, done: int, total: int | None = None, **postfix: Any) -> None:
        if self._bar.disable:
            return
        if total is not None and self._bar.total != total:
            self._bar.total = total
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
