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

import json
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from safetensors import safe_open

from . import io
from ._utils import Progress, atomic_path, file_digest, file_lock
from .adapters import open_clip
from .convert import convert_checkpoint
from .errors import DownloadError, OfflineError, VitzooError
from .pretrained import HF_FILE, PretrainedEntry

__all__ = ["HF_HUB_PREFIX", "cache_dir", "cached_weights", "copy_weights", "download_url",
           "hf_cache_dir", "hub_repo_dir", "is_offline", "local_weights", "push_to_hub",
           "remove_cached", "resolve_weights", "save_pretrained", "sha256_of", "use_cache_dir",
           "verify_cached"]

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


# -- plain HTTP(S) downloads ----------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    """The sha256 hex digest of a file."""
    return file_digest(path, "sha256")


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Append the rest of ``url`` to ``part`` (resuming from its size when it exists)."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "vitzoo"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if start and response.status != 206:  # the server ignored the range: start over
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with Progress(Path(url).name, unit="B", enabled=progress) as bar, \
                open(part, "ab" if start else "wb") as out:
            done = start
            bar(done, total)
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                bar(done, total)
        if total is not None and done != total:
            raise DownloadError(f"{url}: the connection closed after {done} of {total} bytes")


def download_url(url: str, dst: str | Path, *, sha256: str | None = None, retries: int = 3,
                 timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dst`` once, safely.

    An interrupted transfer resumes where it stopped (HTTP ``Range``) on the next of
    ``retries`` attempts. The file is checked against ``sha256`` (the full hex digest, or its
    leading digits) before it is moved into place; a mismatch deletes it. Processes that
    download the same ``dst`` at the same time wait for one another (a lock file), so there is
    one copy and no torn file.

    Raises:
        OfflineError: ``HF_HUB_OFFLINE`` / ``VITZOO_OFFLINE`` is set and ``dst`` is missing.
        DownloadError: the download failed every attempt, or the checksum did not match.
    """
    dst = Path(dst)
    part = dst.with_name(dst.name + ".part")
    with file_lock(dst.with_name(dst.name + ".lock")):
        if dst.is_file():
            return dst
        if is_offline():
            raise OfflineError(f"{dst.name} is not in {dst.parent} and the network is off "
                               f"(HF_HUB_OFFLINE / VITZOO_OFFLINE); its source is {url}")
        for attempt in range(1, retries + 1):
            try:
                _fetch(url, part, timeout, progress)
                break
            except (OSError, urllib.error.URLError, DownloadError) as err:
                if isinstance(err, urllib.error.HTTPError) and err.code in (401, 403, 404):
                    part.unlink(missing_ok=True)
                    raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
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
        os.replace(part, dst)
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


def _hf_download(repo_id: str, filename: str, *, revision: str | None,
                 local_only: bool) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision,
                                    cache_dir=hf_cache_dir(),
                                    local_files_only=local_only or is_offline()))
    except LocalEntryNotFoundError:
        return None
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
        VitzooError: the Hub could not be reached or has no such repository.
    """
    from huggingface_hub import snapshot_download

    repo, _, revision = name.removeprefix(HF_HUB_PREFIX).partition("@")

    def snapshot(patterns: list[str]) -> Path:
        try:
            return Path(snapshot_download(repo, revision=revision or None,
                                          allow_patterns=patterns, cache_dir=hf_cache_dir(),
                                          local_files_only=is_offline()))
        except Exception as err:  # noqa: BLE001 - huggingface_hub raises many kinds
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
    return cache_dir() / "weights" / entry.name / HF_FILE


def local_weights(entry: PretrainedEntry) -> Path | None:
    """The first local copy of ``entry``'s weights: weights dirs, vitzoo's cache, HF's cache."""
    for directory in weights_dirs():
        candidate = directory / entry.name / HF_FILE
        if candidate.is_file():
            return candidate
    if converted_path(entry).is_file():
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
    hub_error: Exception | None = None
    if entry.hf_hub_id and source in (None, "hub"):
        try:
            path = _hf_download(entry.hf_hub_id, HF_FILE, revision=None, local_only=False)
        except (DownloadError, VitzooError) as err:
            if not (entry.url and source is None):
                raise
            logger.warning("%s; trying the original URL %s", err, entry.url)
            hub_error, path = err, None
        if path is not None:
            return path
    if entry.url and source in (None, "url"):
        return _download_and_convert(entry, progress)
    if hub_error is not None:
        raise hub_error
    raise VitzooError(f"{entry.name} has no {source} source")


def _download_and_convert(entry: PretrainedEntry, progress: bool) -> Path:
    """Fetch the original file and keep it as vitzoo safetensors (Google's .npz converted once)."""
    target = converted_path(entry)
    with file_lock(target.with_name(target.name + ".lock")):
        if target.is_file():
            return target
        raw_dir = cache_dir() / "downloads"
        raw = download_url(entry.url, raw_dir / Path(entry.url).name, sha256=entry.sha256,
                           progress=progress)
        if entry.url_format in ("jax_npz", "openai_clip"):  # self-describing originals
            convert_checkpoint(raw, target)
        else:
            io.save_state_dict(io.load_state_dict(raw), target, {"source_url": entry.url})
        raw.unlink(missing_ok=True)  # the converted copy is what is used from now on
    return target


def copy_weights(entry: PretrainedEntry, directory: Path) -> Path:
    """Copy ``entry``'s weights to ``directory/<arch>.<tag>/`` with a ``config.json``."""
    src = resolve_weights(entry)
    out = directory / entry.name
    out.mkdir(parents=True, exist_ok=True)
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
    directory.mkdir(parents=True, exist_ok=True)
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
def cached_weights() -> list[tuple[str, str, Path]]:
    """``(name, place, path)`` of every cached weight file: vitzoo's cache and the
    Hugging Face cache's ``timm/*`` repositories."""
    found = []
    weights = cache_dir() / "weights"
    if weights.is_dir():
        for path in sorted(weights.glob(f"*/{HF_FILE}")):
            found.append((path.parent.name, "vitzoo", path))
    hf = hf_cache_dir()
    if hf.is_dir():
        for repo in sorted(hf.glob("models--timm--*")):
            for path in sorted(repo.glob(f"snapshots/*/{HF_FILE}")):
                found.append((repo.name[len("models--timm--"):], "huggingface", path))
    return found


def verify_cached(path: Path) -> str | None:
    """None when a cached file is intact, else what is wrong with it.

    A Hugging Face blob is named by its sha256, which is checked; every file must open as
    safetensors and read completely.
    """
    real = path.resolve()
    if real.parent.name == "blobs" and len(real.name) == 64:
        actual = sha256_of(real)
        if actual != real.name:
            return f"sha256 {actual} differs from the blob name {real.name}"
    try:
        with safe_open(str(path), framework="np") as f:
            for key in f.keys():  # noqa: SIM118
                f.get_tensor(key)
    except Exception as err:  # noqa: BLE001 - any failure means a damaged file
        return f"cannot be read: {err}"
    return None


def remove_cached(name: str) -> list[Path]:
    """Delete ``name``'s cached copies (vitzoo's cache and its ``timm/`` hub repo)."""
    removed = []
    for target in (cache_dir() / "weights" / name, hf_cache_dir() / f"models--timm--{name}"):
        if target.exists():
            shutil.rmtree(target)
            removed.append(target)
    return removed
