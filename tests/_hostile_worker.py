"""Child processes for tests/test_hostile_cache.py (started with multiprocessing's spawn
context, so they import only this module and vitzoo, not pytest's fixtures)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from pathlib import Path
from typing import Any


def tiny_entry(url: str, sha256: str | None) -> Any:
    """A weight table entry whose only source is ``url`` (a Google .npz on a local server)."""
    import vitzoo

    return dataclasses.replace(vitzoo.pretrained.get_entry("vit_tiny_patch16_224", None),
                               url=url, hf_hub_id=None, sha256=sha256)


def resolve_in_child(url: str, sha256: str, barrier: Any, queue: Any) -> None:
    """Wait for the others, then fetch and convert the entry; report (path, sha256 of it)."""
    from vitzoo.hub import resolve_weights

    entry = tiny_entry(url, sha256)
    barrier.wait(timeout=120)
    path = resolve_weights(entry, progress=False)
    queue.put((str(path), hashlib.sha256(Path(path).read_bytes()).hexdigest()))


def _stall(marker: str) -> None:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(120)  # the parent kills us here


def convert_and_stall(url: str, sha256: str, marker: str) -> None:
    """Fetch and convert the entry, but stop half-way through writing the converted file
    (half of it written, the lock held), as a process killed by SIGKILL does."""
    import vitzoo.io

    real = vitzoo.io.write_safetensors

    def half_then_stall(path, tensors, metadata=None, **options):
        real(path, tensors, metadata, **options)
        with open(path, "r+b") as f:  # a torn file: only its first half reached the disk
            f.truncate(os.path.getsize(path) // 2)
        _stall(marker)

    vitzoo.io.write_safetensors = half_then_stall
    from vitzoo.hub import resolve_weights

    resolve_weights(tiny_entry(url, sha256), progress=False)


def download_in_child(url: str, dst: str, sha256: str) -> None:
    """Download ``url`` to ``dst`` (the parent kills us while the server stalls)."""
    from vitzoo.hub import download_url

    download_url(url, dst, sha256=sha256, retries=1, timeout=120, progress=False)
