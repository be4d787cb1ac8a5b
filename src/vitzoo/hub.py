"""Finding and downloading pretrained weights: the Hugging Face Hub, plain URLs, local copies.

Where weights are looked for, in order (nothing touches the network until the local places
have been searched):

1. every directory in ``VITZOO_WEIGHTS_DIR`` (``os.pathsep``-separated): ``<dir>/<arch>.<tag>/
   model.safetensors``, the layout ``vitzoo download --to DIR`` writes;
2. vitzoo's cache (``VITZOO_CACHE``, default ``$XDG_CACHE_HOME/vitzoo`` or ``~/.cache/vitzoo``),
   where URL downloads are kept, Google ``.npz`` files already converted to safetensors;
3. the Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``, huggingface_hub's rules);
4. the network: the Hub (``timm/<arch>.<tag>``), then the original URL. Never when
   ``HF_HUB_OFFLINE`` or ``VITZOO_OFFLINE`` is set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from safetensors import safe_open

from . import io
from ._utils import (
    TEMP_SUFFIX,
    Progress,
    atomic_path,
    file_digest,
    file_lock,
    file_problem,
    flush_to_disk,
    is_inside,
)
from .adapters import open_clip
from .convert import convert_checkpoint
from .errors import CheckpointError, DownloadError, NetworkError, OfflineError, VitzooError
from .pretrained import HF_FILE, PretrainedEntry

__all__ = ["HF_HUB_PREFIX", "PROBE_TIMEOUT", "cache_dir", "cached_weights", "check_cache_name",
           "check_reachable", "copy_weights", "download_url", "hf_cache_dir", "hub_repo_dir",
           "is_offline", "local_weights", "offline_guidance", "push_to_hub", "remove_cached",
           "resolve_weights", "save_pretrained", "sha256_of", "use_cache_dir", "verify_cached"]

HF_HUB_PREFIX = "hf-hub:"

logger = logging.getLogger(__name__)

# create_model(cache_dir=...): one directory for both caches, for the duration of the call
_CACHE_ROOT: ContextVar[Path | None] = ContextVar("vitzoo_cache_root", default=None)


@contextmanager
def use_cache_dir(path: str | Path | None) -> Iterator[None]:
    """Within the block, keep both caches (vitzoo's converted weights and the Hugging Face
    cache) in ``path``, as timm's ``create_model(cache_dir=...)`` does; None changes nothing."""
    if path is None:
        yield
        return
    token = _CACHE_ROOT.set(Path(path).expanduser())
    try:
        yield
    finally:
        _CACHE_ROOT.reset(token)


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` or ``VITZOO_OFFLINE`` set to a true value."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "VITZOO_OFFLINE"))


def cache_dir() -> Path:
    """vitzoo's cache: ``VITZOO_CACHE``, ``$XDG_CACHE_HOME/vitzoo`` or ``~/.cache/vitzoo``
    (inside :func:`use_cache_dir`, its directory)."""
    root = _CACHE_ROOT.get()
    if root is not None:
        return root
    if os.environ.get("VITZOO_CACHE"):
        return Path(os.environ["VITZOO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "vitzoo"


def weights_dirs() -> list[Path]:
    """The directories of ``VITZOO_WEIGHTS_DIR``."""
    value = os.environ.get("VITZOO_WEIGHTS_DIR", "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p]


# -- names that become paths ---------------------------------------------------------------------
_NAME_PART = r"[A-Za-z0-9][A-Za-z0-9_-]*"
_CACHE_NAME = re.compile(rf"{_NAME_PART}(?:\.{_NAME_PART})?")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_+.-]*")
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+/-]*")
_MAX_NAME = 200


def check_cache_name(name: object) -> str:
    """``name`` when it can name a cache entry: ``arch`` or ``arch.tag`` of letters, digits,
    ``_`` and ``-`` (no separators, ``..``, absolute paths or NUL), at most 200 characters.

    Raises:
        VitzooError: any other name, before it becomes a path.
    """
    if not isinstance(name, str) or len(name) > _MAX_NAME or not _CACHE_NAME.fullmatch(name):
        raise VitzooError(
            f"{name!r} is not a weight name: use arch or arch.tag (letters, digits, '_' and '-', "
            "one '.' between the architecture and the tag; no '/', '..' or absolute paths), "
            "as `vitzoo cache ls` prints them"
        )
    return name


def _check_repo(repo_id: str, revision: str | None = None) -> None:
    """Refuse a Hub repository id (``org/name``) or revision that could step out of the cache."""
    if len(repo_id) > 2 * _MAX_NAME or not _REPO_ID.fullmatch(repo_id) or ".." in repo_id \
            or "--" in repo_id:
        raise VitzooError(f"{repo_id!r} is not a Hugging Face Hub repository id: use org/name "
                          "(letters, digits, '_', '-', '.'; no '..' or '--')")
    if revision and (len(revision) > _MAX_NAME or not _REVISION.fullmatch(revision)
                     or ".." in revision.split("/") or "" in revision.split("/")):
        raise VitzooError(f"{revision!r} is not a revision of {repo_id}: use a branch, tag or "
                          "commit (letters, digits, '_', '-', '.', '+', '/'; no '..')")


def _download_name(url: str) -> str:
    """The file name a URL download is kept under: the URL's own when it is a plain name, else
    one made from the URL's hash (keeping a plain suffix), so no URL steps out of the cache."""
    name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
    if len(name) <= _MAX_NAME and _FILE_NAME.fullmatch(name) and ".." not in name:
        return name
    suffix = "." + name.rsplit(".", 1)[1] if "." in name else ""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return digest + (suffix if suffix and _FILE_NAME.fullmatch(suffix[1:]) else "")


def _usable(path: Path, root: Path) -> bool:
    """A regular file inside ``root`` (symbolic links resolved); one that points outside is
    skipped with a warning."""
    if not os.path.lexists(path):
        return False
    if not is_inside(path, root):
        logger.warning("ignoring %s: it points outside %s (to %s)", path, root,
                       os.path.realpath(path))
        return False
    return file_problem(path) is None


# -- plain HTTP(S) downloads ----------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    """The sha256 hex digest of a file."""
    return file_digest(path, "sha256")


def _open_part(part: Path, start: int) -> Any:
    """``part`` for appending (``start`` > 0) or rewriting; never through a symbolic link."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if start else os.O_TRUNC)
    fd = os.open(part, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0), 0o666)
    return os.fdopen(fd, "ab" if start else "wb")


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Append the rest of ``url`` to ``part`` (resuming from its size when it exists)."""
    start = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "vitzoo"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if start and response.status != 206:  # the server ignored the range: start over
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with Progress(Path(url).name, unit="B", enabled=progress) as bar, \
                _open_part(part, start) as out:
            done = start
            bar(done, total)
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                bar(done, total)
        if total is not None and done != total:
            raise DownloadError(f"{url}: the connection closed after {done} of {total} bytes")


# -- reaching the network ------------------------------------------------------------------------
PROBE_TIMEOUT = 2.0
"""Seconds to resolve a host and, separately, to open a connection to it, before a download."""

_REACHED: set[tuple[str, int]] = set()  # (host, port) pairs this process has connected to
_UNREACHABLE = (socket.gaierror, ConnectionRefusedError)  # a URLError's reason: do not retry


def offline_guidance(name: str | None = None) -> str:
    """What to do on a machine without network access (part of every network error). ``name``
    is a vitzoo model name, or an ``hf-hub:org/repo`` name (whose files live in the Hugging
    Face cache, not in a ``vitzoo download`` directory)."""
    if name and name.startswith(HF_HUB_PREFIX):
        repo = name.removeprefix(HF_HUB_PREFIX).partition("@")[0]
        return ("Without network access: set HF_HUB_OFFLINE=1 to use only local copies, or on a "
                f"connected machine run `hf download {repo}` (or load it once), copy the "
                "Hugging Face cache (HF_HOME) to this machine and set HF_HOME there")
    what = name or "NAME"
    return (f"Without network access: set HF_HUB_OFFLINE=1 to use only local copies, or on a "
            f"connected machine run `vitzoo download {what} --to DIR`, copy DIR to this machine "
            "and set VITZOO_WEIGHTS_DIR=DIR")


def _network_error(unreachable: str, name: str | None = None) -> NetworkError:
    """The error for hosts that cannot be reached: what failed, then what to do offline."""
    return NetworkError(f"{unreachable}. {offline_guidance(name)}", unreachable)


def _connect_target(url: str) -> tuple[str, int]:
    """The host and port a download of ``url`` connects to: its proxy's where one applies
    (``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY``, minus ``NO_PROXY``), else its own."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        default = 1080 if proxy_parts.scheme.startswith("socks") else 80
        return proxy_parts.hostname or host, proxy_parts.port or default
    return host, port


def _resolve(host: str, port: int, timeout: float) -> list[Any]:
    """``getaddrinfo`` with a time limit (the resolver's own can be 30 s)."""
    found: list[Any] = []
    failure: list[BaseException] = []

    def lookup() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as err:
            failure.append(err)

    worker = threading.Thread(target=lookup, daemon=True, name="vitzoo-resolve")
    worker.start()
    worker.join(timeout)
    if failure:
        raise failure[0]
    if worker.is_alive():
        raise TimeoutError(f"the name did not resolve within {timeout:g} s")
    return found


def check_reachable(url: str, name: str | None = None) -> None:
    """Raise :class:`NetworkError` at once when ``url``'s server (or its proxy) cannot be
    reached: the name does not resolve, or no connection opens within :data:`PROBE_TIMEOUT`.

    This runs before downloaders that retry with back-off (huggingface_hub, :func:`download_url`),
    so a machine without network fails in a second instead of after half a minute of retries.
    A host reached once is not probed again by this process.
    """
    host, port = _connect_target(url)
    if (host, port) in _REACHED:
        return
    try:
        addresses = _resolve(host, port, PROBE_TIMEOUT)
        last: OSError = OSError("no address")
        for family, kind, proto, _, address in addresses:
            with socket.socket(family, kind, proto) as probe:
                probe.settimeout(PROBE_TIMEOUT)
                try:
                    probe.connect(address)
                    break
                except OSError as err:
                    last = err
        else:
            raise last
    except OSError as err:
        reason = (f"the name does not resolve ({err.strerror or err})"
                  if isinstance(err, socket.gaierror) else str(err.strerror or err))
        raise _network_error(f"cannot reach {host}:{port}: {reason}", name) from err
    _REACHED.add((host, port))


def _check_download_places(dst: Path, part: Path) -> None:
    """Refuse a destination or partial file that is not a plain file (a directory, a FIFO, a
    symbolic link), before anything is written."""
    if os.path.lexists(dst) and file_problem(dst) is not None:
        raise DownloadError(f"cannot download to {dst}: it is {file_problem(dst)}, not a "
                            "regular file; remove it or choose another destination")
    if os.path.lexists(part) and (part.is_symlink() or file_problem(part) is not None):
        raise DownloadError(f"cannot resume into {part}: it is "
                            f"{'a symbolic link' if part.is_symlink() else file_problem(part)}, "
                            "not a regular file; remove it and run again")


def download_url(url: str, dst: str | Path, *, sha256: str | None = None, retries: int = 3,
                 timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dst`` once, safely.

    An interrupted transfer resumes where it stopped (HTTP ``Range``) on the next of
    ``retries`` attempts. The file is checked against ``sha256`` (the full hex digest, or its
    leading digits) before it is moved into place; a mismatch deletes it. Processes that
    download the same ``dst`` at the same time wait for one another (a lock file), so there is
    one copy and no torn file. Until it is complete the file is ``<dst>.part`` (never read as
    ``dst``); a process killed mid-way leaves only that, and the next call resumes it.

    Raises:
        OfflineError: ``HF_HUB_OFFLINE`` / ``VITZOO_OFFLINE`` is set and ``dst`` is missing.
        NetworkError: the server cannot be reached (checked first, see
            :func:`check_reachable`): raised at once, without retries.
        DownloadError: the download failed every attempt, the checksum did not match, or
            ``dst`` / ``<dst>.part`` is not a regular file (a directory, FIFO, symbolic link).
    """
    dst = Path(dst)
    part = dst.with_name(dst.name + ".part")
    with file_lock(dst.with_name(dst.name + ".lock"), error=DownloadError):
        _check_download_places(dst, part)
        if dst.is_file():
            return dst
        if is_offline():
            raise OfflineError(f"{dst.name} is not in {dst.parent} and the network is off "
                               f"(HF_HUB_OFFLINE / VITZOO_OFFLINE); its source is {url}")
        check_reachable(url)
        for attempt in range(1, retries + 1):
            try:
                _fetch(url, part, timeout, progress)
                break
            except (OSError, urllib.error.URLError, DownloadError) as err:
                if isinstance(err, urllib.error.HTTPError) and err.code in (401, 403, 404):
                    part.unlink(missing_ok=True)
                    raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
                if isinstance(getattr(err, "reason", None), _UNREACHABLE):
                    netloc = urllib.parse.urlsplit(url).netloc
                    raise _network_error(f"cannot reach {netloc}: {err}") from err
                logger.warning("download of %s failed (attempt %d of %d): %s", url, attempt,
                               retries, err)
                if attempt == retries:
                    raise DownloadError(
                        f"{url}: {err} after {retries} attempts; run the command again to "
                        f"resume from the {part.stat().st_size if part.exists() else 0} "
                        "bytes kept"
                    ) from err
                time.sleep(min(0.5 * attempt, 2.0))
        if sha256:
            actual = sha256_of(part)
            if not actual.startswith(sha256.lower()):
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"{url}: sha256 {actual} does not match the expected {sha256}; the file "
                    "was deleted and nothing was cached. Try again; if it persists the source "
                    "has changed"
                )
        try:
            flush_to_disk(part)
            os.replace(part, dst)
            flush_to_disk(dst.parent)
        except OSError as err:
            raise DownloadError(f"cannot move the download of {url} into place at {dst}: "
                                f"{err.strerror or err}; it is kept in {part}") from err
    return dst


# -- where an entry's weights are -----------------------------------------------------------------
def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment as it is now (``HF_HUB_CACHE``, else
    ``HF_HOME/hub``, else huggingface_hub's default; inside :func:`use_cache_dir`, its
    directory)."""
    root = _CACHE_ROOT.get()
    if root is not None:
        return root
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants  # huggingface_hub takes 0.2 s to import: lazily

    return Path(constants.HF_HUB_CACHE)


def _check_hub_reachable(name: str | None) -> None:
    from huggingface_hub import constants

    check_reachable(constants.ENDPOINT, name)


def _hf_download(repo_id: str, filename: str, *, revision: str | None,
                 local_only: bool, name: str | None = None) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    _check_repo(repo_id, revision)
    local_only = local_only or is_offline()
    if not local_only:
        try:
            _check_hub_reachable(name)
        except NetworkError:  # a cached copy still serves, as huggingface_hub would give it
            cached = _hf_download(repo_id, filename, revision=revision, local_only=True)
            if cached is None:
                raise
            return cached
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision,
                                    cache_dir=hf_cache_dir(), local_files_only=local_only))
    except LocalEntryNotFoundError as err:
        if local_only:
            return None
        raise _network_error(f"cannot download {filename} from {repo_id}: {err}", name) from err
    except EntryNotFoundError as err:
        raise VitzooError(f"{repo_id} on the Hugging Face Hub has no {filename}") from err
    except OSError as err:
        if local_only:
            return None
        raise DownloadError(f"cannot download {filename} from {repo_id}: {err}") from err


def hub_repo_dir(name: str) -> Path:
    """The local directory of ``hf-hub:org/repo[@revision]``: its ``config.json`` and weights
    (open_clip's ``open_clip_config.json`` and weights where the repo has them), from the
    Hugging Face cache or downloaded into it.

    Raises:
        OfflineError: not cached and the network is off.
        NetworkError: not cached and the Hub cannot be reached.
        VitzooError: the Hub failed or has no such repository, or the name is not
            ``org/repo[@revision]`` of safe characters.
    """
    from huggingface_hub import snapshot_download

    repo, _, revision = name.removeprefix(HF_HUB_PREFIX).partition("@")
    _check_repo(repo, revision)

    unreachable: NetworkError | None = None
    if not is_offline():
        try:
            _check_hub_reachable(HF_HUB_PREFIX + repo)
        except NetworkError as err:  # the cached snapshot, if there is one, still serves
            unreachable = err

    def snapshot(patterns: list[str]) -> Path:
        try:
            return Path(snapshot_download(repo, revision=revision or None,
                                          allow_patterns=patterns, cache_dir=hf_cache_dir(),
                                          local_files_only=is_offline() or bool(unreachable)))
        except Exception as err:  # noqa: BLE001 - huggingface_hub raises many kinds
            if unreachable is not None:
                raise unreachable from err
            if is_offline():
                raise OfflineError(f"{repo} is not in the Hugging Face cache and the network "
                                   f"is off (HF_HUB_OFFLINE): {err}") from err
            raise VitzooError(f"cannot fetch {repo} from the Hugging Face Hub: {err}") from err

    # open_clip's repos (laion/..., apple/DFN...) also hold transformers' files: fetch only
    # the weights of the layout that is read, once
    if (snapshot([open_clip.CONFIG_FILE, "config.json"]) / open_clip.CONFIG_FILE).is_file():
        for weights in open_clip.WEIGHT_FILES:
            directory = snapshot([open_clip.CONFIG_FILE, weights])
            if (directory / weights).is_file():
                break
        return directory
    return snapshot(["config.json", "model.safetensors", "preprocessor_config.json"])


def converted_path(entry: PretrainedEntry) -> Path:
    """Where a URL download of ``entry`` is kept, as vitzoo safetensors."""
    return cache_dir() / "weights" / check_cache_name(entry.name) / HF_FILE


def local_weights(entry: PretrainedEntry) -> Path | None:
    """The first local copy of ``entry``'s weights: weights dirs, vitzoo's cache, HF's cache.

    Only regular files inside their directory count (a symbolic link may point elsewhere in
    it, as the Hub cache's do, but not outside).
    """
    name = check_cache_name(entry.name)
    for directory in weights_dirs():
        candidate = directory / name / HF_FILE
        if _usable(candidate, directory):
            return candidate
    if _usable(converted_path(entry), cache_dir()):
        return converted_path(entry)
    if entry.hf_hub_id:
        return _hf_download(entry.hf_hub_id, HF_FILE, revision=None, local_only=True)
    return None


def _searched(entry: PretrainedEntry) -> str:
    places = [str(d / entry.name / HF_FILE) for d in weights_dirs()]
    places.append(str(converted_path(entry)))
    if entry.hf_hub_id:
        places.append(f"{hf_cache_dir()} (repo {entry.hf_hub_id})")
    return "; ".join(places)


def resolve_weights(entry: PretrainedEntry, *, source: str | None = None,
                    progress: bool = True) -> Path:
    """A local path to ``entry``'s weights, downloading them when allowed.

    Args:
        entry: the weight set.
        source: ``None`` (local copies, then the Hub, then the URL), ``"hub"`` or ``"url"``.
        progress: show a progress bar for URL downloads on an interactive terminal.

    Raises:
        VitzooError: the tag has no weights.
        OfflineError: nothing local and the network is off; the message names the file, its
            sources and every place searched.
        NetworkError: nothing local and no source can be reached (found in about a second,
            before any retry); the message says how to work offline.
    """
    if not entry.has_weights:
        raise VitzooError(f"{entry.name} has no pretrained weights ({entry.notes.strip()})")
    if source not in (None, "hub", "url"):
        raise VitzooError(f"source={source!r} is not 'hub' or 'url'")
    if source is None:
        local = local_weights(entry)
        if local is not None:
            return local
    if is_offline():
        sources = ", ".join(s for s in (entry.hf_hub_id and f"hf-hub:{entry.hf_hub_id}",
                                        entry.url) if s)
        raise OfflineError(
            f"the weights of {entry.name} are not available offline. File: {HF_FILE}; "
            f"sources: {sources}. Searched: {_searched(entry)}. Download them on a connected "
            f"machine with `vitzoo download {entry.name} --to DIR` and set VITZOO_WEIGHTS_DIR=DIR"
        )
    hub_error: DownloadError | VitzooError | None = None
    if entry.hf_hub_id and source in (None, "hub"):
        try:
            path = _hf_download(entry.hf_hub_id, HF_FILE, revision=None, local_only=False,
                                name=entry.name)
        except (DownloadError, VitzooError) as err:
            if not (entry.url and source is None):
                raise
            logger.warning("%s; trying the original URL %s", getattr(err, "unreachable", err),
                           entry.url)
            hub_error, path = err, None
        if path is not None:
            return path
    if entry.url and source in (None, "url"):
        try:
            check_reachable(entry.url, entry.name)
        except NetworkError as err:
            if isinstance(hub_error, NetworkError):  # neither place: one message for both
                raise _network_error(f"{hub_error.unreachable}; {err.unreachable}",
                                     entry.name) from err
            raise
        return _download_and_convert(entry, progress)
    if hub_error is not None:
        raise hub_error
    # only an asked-for source can be missing: an entry with weights has a Hub id or a URL
    where = "on the Hugging Face Hub" if source == "hub" else "at an original URL"
    raise VitzooError(f"{entry.name} has no weights {where}; call without source= to use "
                      "the other place")


def _remove_stale_temps(directory: Path, name: str) -> None:
    """Delete the temporary files a killed writer of ``directory/name`` left (call it holding
    the entry's lock, so no live writer owns them)."""
    for stale in directory.glob(f".{name}.*{TEMP_SUFFIX}"):
        if stale.is_file() and not stale.is_symlink():
            logger.info("removing %s, left by an interrupted write", stale)
            stale.unlink(missing_ok=True)


def _download_and_convert(entry: PretrainedEntry, progress: bool) -> Path:
    """Fetch the original file and keep it as vitzoo safetensors (Google's .npz converted once).

    Processes converting one entry at the same time wait for one another (a lock file next to
    it); the converted file appears by an atomic rename, so readers see it whole or not at all.
    """
    assert entry.url is not None  # (resolve_weights downloads only an entry with a URL)
    target = converted_path(entry)
    with file_lock(target.with_name(target.name + ".lock"), error=DownloadError):
        if _usable(target, cache_dir()):
            return target
        _remove_stale_temps(target.parent, target.name)
        raw_dir = cache_dir() / "downloads"
        raw = download_url(entry.url, raw_dir / _download_name(entry.url), sha256=entry.sha256,
                           progress=progress)
        if entry.url_format in ("jax_npz", "openai_clip"):  # self-describing originals
            convert_checkpoint(raw, target)
        else:
            io.save_state_dict(io.load_state_dict(raw), target, {"source_url": entry.url})
        raw.unlink(missing_ok=True)  # the converted copy is what is used from now on
    return target


def copy_weights(entry: PretrainedEntry, directory: Path) -> Path:
    """Copy ``entry``'s weights to ``directory/<arch>.<tag>/`` with a ``config.json``.

    Raises:
        VitzooError: ``directory/<arch>.<tag>`` exists and is not a directory inside
            ``directory`` (a file, or a symbolic link pointing elsewhere).
    """
    src = resolve_weights(entry)
    out = Path(directory) / check_cache_name(entry.name)
    if os.path.lexists(out):
        why = (f"a link to {os.path.realpath(out)}, outside {directory}"
               if not is_inside(out, directory) else None if out.is_dir() else "not a directory")
        if why:
            raise VitzooError(f"cannot copy {entry.name} to {out}: it is {why}; remove it or "
                              "choose another directory")
    with atomic_path(out / HF_FILE) as tmp:
        shutil.copyfile(src, tmp)
    config = {"architecture": entry.arch, "tag": entry.tag, "num_classes": entry.num_classes,
              "pretrained_cfg": entry.to_dict()}
    with atomic_path(out / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2, default=list) + "\n")
    return out / HF_FILE


# -- writing the hub layout -----------------------------------------------------------------------
def save_pretrained(model: Any, directory: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (the Hugging Face / timm hub layout).

    ``config.json`` holds timm's fields (``architecture``, ``num_classes``,
    ``pretrained_cfg``) and vitzoo's full ``vitzoo_config``, so both
    :func:`vitzoo.load_model` and ``create_model("hf-hub:...")`` rebuild the exact model.
    """
    directory = Path(directory)
    cfg = model.cfg
    pretrained = dict(getattr(model, "pretrained_cfg", {}) or {})
    config = {"architecture": pretrained.get("architecture"), "num_classes": cfg.num_classes,
              "num_features": model.num_features, "global_pool": cfg.global_pool,
              "pretrained_cfg": pretrained, "vitzoo_config": cfg.to_dict()}
    if os.path.lexists(directory) and not directory.is_dir():
        raise CheckpointError(f"cannot save to {directory}: it is "
                              f"{file_problem(directory) or 'a file'}, not a directory")
    io.save_state_dict(model.state_dict(), directory / HF_FILE, {"format": "pt"})
    with atomic_path(directory / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2, default=list) + "\n")
    return directory


def push_to_hub(model: Any, repo_id: str, *, private: bool = False,
                commit_message: str = "Upload with vitzoo") -> str:
    """Upload ``model`` in the hub layout to ``repo_id`` (creating it); returns the commit URL.

    Uses huggingface_hub's ``create_repo`` and ``upload_folder`` with the logged-in token.
    """
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp)
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp,
                                 commit_message=commit_message)
    return str(info)


# -- the caches -----------------------------------------------------------------------------------
_HF_TIMM = "models--timm--"


def _listdir(path: Path) -> list[Path]:
    try:
        return sorted(path.iterdir())
    except OSError:  # not a directory, unreadable, a symbolic link loop
        return []


def _entries(base: Path, place: str) -> Iterator[tuple[str, Path]]:
    """``(name, path)`` of every weight file in the cache ``base`` (``place``: vitzoo's or the
    Hub's layout), whatever kind of file it is, whose entry directory is a valid name and that
    resolves inside ``base``; others are skipped with a warning, so nothing outside ``base``
    is ever read."""
    if place == "vitzoo":
        candidates = [(d.name, d / HF_FILE) for d in _listdir(base / "weights")]
    else:
        candidates = [(repo.name[len(_HF_TIMM):], snap / HF_FILE) for repo in _listdir(base)
                      if repo.name.startswith(_HF_TIMM)
                      for snap in _listdir(repo / "snapshots")]
    for name, path in candidates:
        if not os.path.lexists(path):
            continue
        if not _CACHE_NAME.fullmatch(name):
            logger.warning("ignoring %s: %r is not a weight name", path, name)
        elif not is_inside(path, base):
            logger.warning("ignoring %s: it points outside the cache %s (to %s)", path, base,
                           os.path.realpath(path))
        else:
            yield name, path


def cached_weights() -> list[tuple[str, str, Path]]:
    """``(name, place, path)`` of every cached weight file: vitzoo's cache and the
    Hugging Face cache's ``timm/*`` repositories.

    Only entries with valid names whose files resolve inside their cache are listed; a listed
    path may still be a special file (a FIFO, a directory, a symbolic link loop), which
    :func:`verify_cached` reports.
    """
    found = [(name, "vitzoo", path) for name, path in _entries(cache_dir(), "vitzoo")]
    found += [(name, "huggingface", path) for name, path in _entries(hf_cache_dir(), "hf")]
    return found


def verify_cached(path: Path) -> str | None:
    """None when a cached file is intact, else what is wrong with it.

    A Hugging Face blob is named by its sha256, which is checked; every file must open as
    safetensors and read completely. A FIFO, socket, device, directory or symbolic-link loop
    is reported without being opened, so this never blocks.
    """
    problem = file_problem(path)
    if problem is not None:
        return f"{path} is {problem}, not a regular file (remove it with `vitzoo cache rm`)"
    real = Path(os.path.realpath(path))
    try:
        if real.parent.name == "blobs" and len(real.name) == 64:
            actual = sha256_of(real)
            if actual != real.name:
                return f"sha256 {actual} differs from the blob name {real.name}"
        with safe_open(str(real), framework="np") as f:
            for key in f.keys():  # noqa: SIM118
                f.get_tensor(key)
    except Exception as err:  # noqa: BLE001 - any failure means a damaged file
        return f"cannot be read: {err}"
    return None


def _remove_entry(target: Path, base: Path) -> bool:
    """Delete the cache entry ``target`` (a directory, file or symbolic link, whose directory
    resolves inside the cache ``base``); a symbolic link is removed itself, never what it
    points to."""
    if not os.path.lexists(target):
        return False
    if not is_inside(target.parent, base):
        raise VitzooError(f"{target} is not inside the cache {base}: {target.parent} is a "
                          f"symbolic link to {os.path.realpath(target.parent)}; nothing was "
                          "removed")
    try:
        if target.is_symlink() or not target.is_dir():
            target.unlink()
        else:
            shutil.rmtree(target)  # never follows symbolic links inside the tree
    except OSError as err:
        raise VitzooError(f"cannot remove {target}: {err.strerror or err}") from err
    return True


def remove_cached(name: str) -> list[Path]:
    """Delete ``name``'s cached copies (vitzoo's cache and its ``timm/`` hub repo).

    Only the entries ``<cache>/weights/<name>`` and ``<hf cache>/models--timm--<name>`` are
    touched; a symbolic link among them is removed, not followed.

    Raises:
        VitzooError: ``name`` is not ``arch[.tag]`` of safe characters (see
            :func:`check_cache_name`), or an entry could not be removed.
    """
    check_cache_name(name)
    removed = []
    for base, entry in ((cache_dir(), Path("weights", name)), (hf_cache_dir(), _HF_TIMM + name)):
        if _remove_entry(base / entry, base):
            removed.append(base / entry)
    return removed
