"""Small helpers shared by the whole package: atomic writes, close-match suggestions,
building without initialisation, file digests, the progress display and file locks."""

from __future__ import annotations

import contextlib
import difflib
import errno
import hashlib
import logging
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import filelock
import torch
from torch import nn
from tqdm import tqdm
from tqdm.auto import tqdm as auto_tqdm

from .errors import CheckpointError, VitzooError

__all__ = ["TEMP_SUFFIX", "Progress", "atomic_path", "close_matches", "file_digest", "file_kind",
           "file_lock", "file_problem", "flush_to_disk", "is_inside", "open_regular", "skip_init",
           "suggestion"]

logger = logging.getLogger(__name__)


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
def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words: ``"a regular file"``, ``"a directory"``, ``"a FIFO"``..."""
    for test, kind in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return kind
    return "a special file"


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a regular file (``"a FIFO (named pipe)"``, ``"a symbolic
    link loop"``, ``"missing"`` ...), or None when it can; never opens it."""
    try:
        mode = os.stat(path).st_mode  # follows symbolic links (a Hub snapshot is made of them)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symbolic link loop"
        if err.errno == errno.ENOENT:
            return "missing (or a symbolic link to nothing)" if os.path.islink(path) \
                else "missing"
        return f"unreadable ({err.strerror})"
    return None if stat.S_ISREG(mode) else file_kind(mode)


def open_regular(path: str | Path, *,
                 error: type[VitzooError] = CheckpointError) -> BinaryIO:
    """Open ``path`` for reading in binary mode, refusing anything but a regular file.

    A FIFO, socket, device, directory or symbolic-link loop raises at once instead of
    blocking or reading forever: the type is checked before the file is opened, the file is
    opened without blocking and checked again on the open descriptor (it may have been
    replaced in between).

    Raises:
        VitzooError: ``error`` (``CheckpointError`` by default), naming the path and its kind.
    """
    path = Path(path)
    problem = file_problem(path)
    if problem is None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                         | getattr(os, "O_BINARY", 0))
        except OSError as err:
            problem = file_problem(path) or f"unreadable ({err.strerror})"
        else:
            mode = os.fstat(fd).st_mode
            if stat.S_ISREG(mode):
                return os.fdopen(fd, "rb")
            os.close(fd)
            problem = file_kind(mode)
    raise error(f"{path} is {problem}, not a regular file; vitzoo reads only regular files "
                "(remove or replace it)")


def is_inside(path: str | Path, root: str | Path) -> bool:
    """Whether ``path``, with every symbolic link resolved, lies inside ``root`` (resolved too).

    A symbolic link loop resolves no further than the loop, so a loop inside ``root`` is inside
    it (and then refused as "a symbolic link loop" by whatever opens it).
    """
    real = Path(os.path.realpath(path))
    base = Path(os.path.realpath(root))
    return real == base or base in real.parents


def _new_file_mode(target: Path) -> int:
    """The permissions a plain ``open(target, "w")`` would give: the old file's, or 0666 less
    the umask for a new one."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(target.stat().st_mode)
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


TEMP_SUFFIX = ".tmp"
"""The suffix of :func:`atomic_path`'s temporary files (``.<name>.<random>.tmp``); nothing
vitzoo reads has it."""


def _temp_beside(target: Path, error: type[VitzooError]) -> Path:
    """A new empty temporary file in ``target``'s directory (which is created if needed)."""
    if target.is_dir():
        raise error(f"{target} is a directory; give a file name to write to (or remove the "
                    "directory)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX,
                                   dir=target.parent)
    except OSError as err:
        raise error(f"cannot write {target}: {err.strerror or err} ({target.parent} must be a "
                    "writable directory)") from err
    os.close(fd)
    return Path(tmp)


def flush_to_disk(path: Path) -> None:
    """``fsync`` a file or directory, so that a rename made after it survives a power cut with
    the file's bytes (a platform that cannot sync a directory is skipped)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        if path.is_dir():
            return  # Windows opens no directory: its renames are durable without it
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | Path, *,
                error: type[VitzooError] = CheckpointError) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s directory; rename it to ``target`` when the block
    succeeds, delete it when the block raises, so a failed write leaves nothing behind (and an
    older ``target`` untouched). The file gets the permissions an ordinary write would give.

    A process killed in the block leaves at most its ``.<name>.<random>.tmp`` file, a name no
    reader takes for ``target``. The file's bytes are flushed to disk (``fsync``) before the
    rename and the directory after it, so a power cut leaves the old file or the whole new one.

    Raises:
        VitzooError: ``error`` (``CheckpointError`` by default) when ``target`` is a directory,
            its directory cannot be written, or the block fails with an ``OSError`` (a full
            disk: ``ENOSPC``); the message names ``target``.
    """
    target = Path(target)
    tmp_path = _temp_beside(target, error)
    try:
        os.chmod(tmp_path, _new_file_mode(target))
        yield tmp_path
        if target.is_dir():  # it may have appeared while the block ran
            raise error(f"{target} is a directory; give a file name to write to (or remove "
                        "the directory)")
        flush_to_disk(tmp_path)
        os.replace(tmp_path, target)
        flush_to_disk(target.parent)
    except OSError as err:
        if isinstance(err, VitzooError):
            raise
        raise error(f"cannot write {target}: {err.strerror or err}; nothing was written"
                    + (" and the previous file is as it was" if target.is_file() else "")
                    ) from err
    finally:
        tmp_path.unlink(missing_ok=True)


def file_digest(path: str | Path, algorithm: str = "sha256", *,
                error: type[VitzooError] = CheckpointError) -> str:
    """The hex digest of a file's bytes, read in 1 MiB chunks.

    Raises:
        VitzooError: ``error`` (``CheckpointError`` by default) when ``path`` is not a regular
            file (a FIFO, device, directory, symbolic-link loop) or cannot be read.
    """
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open_regular(path, error=error) as f:
        try:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        except OSError as err:
            raise error(f"cannot read {path}: {err.strerror or err}") from err
    return digest.hexdigest()


_LOCK_WAIT_NOTICE_S = 2.0


@contextlib.contextmanager
def file_lock(path: str | Path, *,
              error: type[VitzooError] = CheckpointError) -> Iterator[None]:
    """An exclusive lock held across processes (``filelock``) on ``path``, created if needed.

    The operating system releases the lock when its holder dies (even by SIGKILL), so a
    crashed run never blocks the next one; a live holder is waited for, with a log message
    after a few seconds naming the lock file.

    Raises:
        VitzooError: ``error`` when ``path`` is a symbolic link or not a regular file (locking
            would truncate whatever it points to), or cannot be created.
    """
    path = Path(path)
    if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):
        raise error(f"the lock file {path} is {file_problem(path) or 'a symbolic link'}, not "
                    "a regular file; remove it and run again")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(path))
        try:
            lock.acquire(timeout=_LOCK_WAIT_NOTICE_S)
        except filelock.Timeout:
            logger.info("waiting for another process to finish with %s (lock file %s)",
                         path.with_suffix("").name, path)
            lock.acquire()
    except OSError as err:
        raise error(f"cannot lock {path}: {err.strerror or err}") from err
    try:
        yield
    finally:
        lock.release()


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
PIPED_INTERVAL = 10.0
"""Seconds between two progress lines when stderr is not a terminal."""


_PIPED_FORMAT = ("{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} "
                 "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")
_PIPED_FORMAT_NO_TOTAL = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"
"""tqdm's line without its bar, for pipes (with and without a known total)."""


class _Lines:
    """A stream for tqdm that turns its carriage-return redraws into whole lines, for a stderr
    that is a pipe or a file: each redraw becomes one line; blank and repeated redraws vanish."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._last = ""

    def write(self, text: str) -> None:
        for piece in text.replace("\x1b[A", "").split("\r"):
            line = piece.strip()
            if line and line != self._last:  # closing redraws the last state once more
                self._stream.write(line + "\n")
                self._last = line

    def flush(self) -> None:
        self._stream.flush()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _in_notebook() -> bool:
    """tqdm.auto chose its notebook widget (an IPython kernel with ipywidgets)."""
    return any(cls.__module__ == "tqdm.notebook" for cls in auto_tqdm.__mro__)


class Progress:
    """The one progress display of vitzoo (tqdm on stderr), for downloads, conversion and
    training; call it with ``(done, total)``. On a terminal it is tqdm's redrawn bar, in a
    notebook tqdm's widget. When stderr is a pipe or a file it writes one plain line at the
    first call, then at most one every :data:`PIPED_INTERVAL` seconds and a last one at the
    end, so logs stay readable.

    Args:
        desc: what is progressing (a file name, "converting", "training").
        unit: ``"B"`` for bytes (scaled to KiB/MiB), else the name of one item.
        enabled: False shows nothing (``--quiet``).
    """

    def __init__(self, desc: str, *, unit: str = "it", enabled: bool = True) -> None:
        self._enabled = enabled and sys.stderr is not None
        self._options: dict[str, Any] = {
            "desc": desc, "unit": unit, "unit_scale": unit == "B", "unit_divisor": 1024,
            "leave": True, "dynamic_ncols": True}
        self._bar: Any = None  # made at the first call, when the total is known

    def _make(self, total: int | None) -> Any:
        if _in_notebook():
            return auto_tqdm(total=total, **self._options)
        options = dict(self._options)
        if not _is_terminal(sys.stderr):
            options.update(file=_Lines(sys.stderr), mininterval=PIPED_INTERVAL,
                           maxinterval=PIPED_INTERVAL,
                           bar_format=_PIPED_FORMAT if total else _PIPED_FORMAT_NO_TOTAL,
                           dynamic_ncols=False)
        return tqdm(total=total, **options)

    def __call__(self, done: int, total: int | None = None, **postfix: Any) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            self._bar = self._make(total)
        elif total is not None and self._bar.total != total:
            self._bar.total = total
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
