"""Hostile caches: names that are paths, special files, full disks, concurrent writers, crashes.

Every test that could hang runs under a deadline (``signal.alarm`` in this process, a join
timeout for children), so a regression fails instead of blocking the suite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import _hostile_worker as worker
import vitzoo
from vitzoo import hub
from vitzoo._utils import atomic_path, file_digest, file_lock, open_regular
from vitzoo.adapters import jax_npz
from vitzoo.cli import main
from vitzoo.errors import CheckpointError, DownloadError, VerificationError, VitzooError

from conftest import jax_model, tiny_cfg

NAME = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"


# -- helpers --------------------------------------------------------------------------------------
_RELEASER = """
import contextlib, os, sys, time
time.sleep(float(sys.argv[1]))
open(sys.argv[2], "w").close()
while True:
    for fifo in sys.argv[3:]:
        with contextlib.suppress(OSError):  # ENXIO: nobody is reading it
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    time.sleep(0.05)
"""


@contextlib.contextmanager
def deadline(seconds: int, *, fifos: Iterable[Path] = ()) -> Iterator[None]:
    """Fail (instead of hanging) when the block runs longer than ``seconds``.

    SIGALRM interrupts Python code. A read blocked on one of ``fifos`` inside native code
    (safetensors' Rust holds the GIL and retries on EINTR, so no signal handler or thread of
    this process runs) is released by a separate process that opens each FIFO for writing and
    closes it (the reader sees an empty file); the test then fails.
    """
    fifos = [str(f) for f in fifos]
    flag = Path(tempfile.mkdtemp()) / "blocked"
    releaser = subprocess.Popen([sys.executable, "-c", _RELEASER, str(seconds), str(flag),
                                 *fifos]) if fifos else None

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: it blocked")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if releaser is not None:
            releaser.kill()
            releaser.wait()
    assert not flag.exists(), f"blocked for more than {seconds} s on a FIFO"


def snapshot(root: Path) -> dict[str, object]:
    """Every entry under ``root`` (not following links): files by bytes, links by target."""
    found: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = "dir"
            elif path.is_file():
                found[rel] = path.read_bytes()
            else:
                found[rel] = "special"
    return found


def tiny_safetensors(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.arange(4.0)}, str(path), metadata={"format": "pt"})
    return path


@pytest.fixture
def caches(tmp_path, monkeypatch) -> dict[str, Path]:
    """vitzoo's and the Hub's caches side by side with a sentinel folder that must survive,
    and one real entry in each cache."""
    root = tmp_path / "c"
    paths = {"vitzoo": root / "vz", "hf": root / "hf" / "hub", "outside": root / "outside"}
    monkeypatch.setenv("VITZOO_CACHE", str(paths["vitzoo"]))
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    tiny_safetensors(paths["vitzoo"] / "weights" / NAME / "model.safetensors")
    tiny_safetensors(paths["outside"] / "x" / "model.safetensors")
    (paths["outside"] / "x" / "keep.txt").write_text("the sentinel")
    tiny_safetensors(paths["outside"] / "model.safetensors")
    return paths


# -- 1. paths never escape their root -------------------------------------------------------------
HOSTILE_NAMES = ["../outside", "../../c/outside/x", "..", ".", "..%2foutside", "a/../../outside",
                 "weights/../../outside", "x\0y", "", ".hidden", "a.b.c", "a b", "-rf", "a\\b",
                 "vit.tag/", "../outside/x", "~", "a" * 201]


@pytest.mark.parametrize("name", HOSTILE_NAMES + ["ABSOLUTE"])
def test_cache_rm_refuses_names_that_are_paths_and_removes_nothing(caches, capsys, name):
    if name == "ABSOLUTE":
        name = str(caches["outside"] / "x")
    before = snapshot(caches["vitzoo"].parent)
    assert main(["cache", "rm", "--", name]) == 2
    assert "is not a weight name" in capsys.readouterr().err
    assert snapshot(caches["vitzoo"].parent) == before  # both caches and the sentinel


def test_cache_rm_checks_every_name_before_removing_any(caches):
    assert main(["cache", "rm", NAME, "../outside"]) == 2
    assert (caches["vitzoo"] / "weights" / NAME / "model.safetensors").is_file()


def test_cache_rm_removes_a_symlinked_entry_not_what_it_points_to(caches, capsys):
    outside = snapshot(caches["outside"])
    link = caches["vitzoo"] / "weights" / "vit_small_patch16_224.x"
    link.symlink_to(caches["outside"] / "x", target_is_directory=True)
    hf_link = caches["hf"] / "models--timm--vit_small_patch16_224.x"
    hf_link.parent.mkdir(parents=True)
    hf_link.symlink_to(caches["outside"], target_is_directory=True)
    assert main(["cache", "rm", "vit_small_patch16_224.x"]) == 0
    assert not os.path.lexists(link) and not os.path.lexists(hf_link)
    assert snapshot(caches["outside"]) == outside
    assert capsys.readouterr().out.count("removed ") == 2


def test_cache_rm_refuses_a_weights_folder_that_points_outside(caches, capsys):
    weights = caches["vitzoo"] / "weights"
    (weights / NAME / "model.safetensors").unlink()
    (weights / NAME).rmdir()
    weights.rmdir()
    weights.symlink_to(caches["outside"], target_is_directory=True)
    outside = snapshot(caches["outside"])
    assert main(["cache", "rm", "x"]) == 2
    assert "not inside the cache" in capsys.readouterr().err
    assert snapshot(caches["outside"]) == outside
    assert hub.cached_weights() == []  # ls does not list (or read) what lies outside either


def test_ls_and_verify_skip_files_that_resolve_outside_the_cache(caches, capsys):
    entry = caches["vitzoo"] / "weights" / "vit_small_patch16_224.out"
    entry.mkdir()
    os.mkfifo(caches["outside"] / "pipe")  # reading it would block: it is never opened
    (entry / "model.safetensors").symlink_to(caches["outside"] / "pipe")
    bad_name = caches["vitzoo"] / "weights" / "not a name"
    tiny_safetensors(bad_name / "model.safetensors")
    with deadline(20, fifos=[caches["outside"] / "pipe"]):
        assert main(["cache", "verify"]) == 0
        assert main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert f"ok   {NAME} (vitzoo)" in out and NAME in out.splitlines()[-1]
    assert "vit_small_patch16_224.out" not in out and "not a name" not in out


def test_a_weights_dir_entry_linking_outside_is_not_loaded(caches, monkeypatch):
    weights = caches["vitzoo"].parent / "mine"
    weights.mkdir()
    (weights / NAME).symlink_to(caches["outside"] / "x", target_is_directory=True)
    monkeypatch.setenv("VITZOO_WEIGHTS_DIR", str(weights))
    entry = vitzoo.pretrained.get_entry("vit_tiny_patch16_224", "augreg_in21k_ft_in1k")
    assert hub.local_weights(entry) == caches["vitzoo"] / "weights" / NAME / "model.safetensors"


@pytest.mark.parametrize("tag", ["../../../outside", "x/../../y", "/abs", "a\0b", "a.b"])
def test_weight_entries_with_unsafe_tags_never_become_paths(caches, tag):
    entry = dataclasses.replace(vitzoo.pretrained.get_entry("vit_tiny_patch16_224", None),
                                tag=tag)
    before = snapshot(caches["vitzoo"].parent)
    for call in (hub.converted_path, hub.local_weights, hub.resolve_weights):
        with pytest.raises(VitzooError, match="is not a weight name"):
            call(entry)
    with pytest.raises(VitzooError, match="is not a weight name"):
        hub.copy_weights(dataclasses.replace(entry, tag="augreg_in21k_ft_in1k", arch="../x"),
                         caches["vitzoo"].parent / "to")
    assert snapshot(caches["vitzoo"].parent) == before


@pytest.mark.parametrize("name", ["hf-hub:../../outside", "hf-hub:org/../x", "hf-hub:/etc/x",
                                  "hf-hub:org/x@../../../outside", "hf-hub:org/x@/abs",
                                  "hf-hub:org--a/x", "hf-hub:org/x\0", "hf-hub:a/b/c"])
def test_hub_names_that_are_paths_are_refused_before_any_lookup(caches, name, monkeypatch):
    import huggingface_hub

    def never(*args, **kwargs):
        raise AssertionError("huggingface_hub was asked")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", never)
    with pytest.raises(VitzooError, match="is not a Hugging Face Hub repository id|is not a "
                                          "revision"):
        hub.hub_repo_dir(name)


@pytest.mark.parametrize("url", ["http://h/a/..", "http://h/..%2f..%2foutside.npz",
                                 "http://h/m.npz?x=/../../y", "http://h/", "http://h/.npz",
                                 "http://h/a/.hidden.npz", "http://h/" + "x" * 300 + ".npz"])
def test_download_file_names_from_urls_are_plain_names(url):
    name = hub._download_name(url)
    assert "/" not in name and "\\" not in name and ".." not in name
    assert not name.startswith(".") and 0 < len(name) <= 200
    assert hub._download_name("https://x/R50+ViT-B_16.npz") == "R50+ViT-B_16.npz"
    if url.endswith(".npz"):
        assert name.endswith(".npz")


def test_download_to_a_link_pointing_outside_is_refused(caches, capsys, tmp_path):
    hf_repo = caches["hf"] / f"models--timm--{NAME}" / "snapshots" / "abc"
    tiny_safetensors(hf_repo / "model.safetensors")
    to = tmp_path / "to"
    to.mkdir()
    (to / NAME).symlink_to(caches["outside"] / "x", target_is_directory=True)
    outside = snapshot(caches["outside"])
    assert main(["download", NAME, "--to", str(to)]) == 2
    assert "outside" in capsys.readouterr().err
    assert snapshot(caches["outside"]) == outside


# -- 2. special files -----------------------------------------------------------------------------
def _special(kind: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":  # bound by a relative name: a socket's path has a length limit
        with contextlib.chdir(path.parent), socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path.name)
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "directory":
        path.mkdir()
    elif kind == "dangling":
        path.symlink_to("nothing-here")
    return path


SPECIAL = ["fifo", "socket", "loop", "directory", "dangling"]


@pytest.mark.parametrize("kind", SPECIAL)
def test_a_special_file_in_the_cache_is_reported_not_opened(caches, capsys, kind):
    path = caches["vitzoo"] / "weights" / "vit_small_patch16_224.s" / "model.safetensors"
    _special(kind, path)
    with deadline(20, fifos=[path] if kind == "fifo" else []):
        assert main(["cache", "verify"]) == 1
        assert main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert f"ok   {NAME} (vitzoo)" in out
    bad = [line for line in out.splitlines() if line.startswith("BAD")]
    assert len(bad) == 1 and "vit_small_patch16_224.s (vitzoo)" in bad[0]
    assert "not a regular file" in bad[0]
    words = {"fifo": "FIFO", "socket": "socket", "loop": "symbolic link loop",
             "directory": "directory", "dangling": "missing"}
    assert words[kind] in bad[0]


def test_a_fifo_as_a_hub_blob_does_not_block_verify(caches, capsys):
    repo = caches["hf"] / f"models--timm--{NAME}"
    blob = "ab" * 32
    os.mkfifo(_special("directory", repo / "blobs") / blob)
    (repo / "snapshots" / "c0").mkdir(parents=True)
    (repo / "snapshots" / "c0" / "model.safetensors").symlink_to(f"../../blobs/{blob}")
    with deadline(20, fifos=[repo / "blobs" / blob]):
        assert main(["cache", "verify"]) == 1
    assert f"BAD  {NAME} (huggingface): " in capsys.readouterr().out


@pytest.mark.parametrize("kind", [*SPECIAL, "device", "missing"])
def test_file_digest_refuses_what_is_not_a_regular_file(tmp_path, kind):
    path = Path("/dev/zero") if kind == "device" else tmp_path / "f"  # /dev/zero never ends
    if kind not in ("device", "missing"):
        _special(kind, path)
    fifos = [path] if kind == "fifo" else []
    with deadline(10, fifos=fifos), pytest.raises(CheckpointError, match="not a regular file") \
            as err:
        file_digest(path)
    assert str(path) in str(err.value)
    with deadline(10, fifos=fifos), pytest.raises(CheckpointError):
        open_regular(path)


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_kept(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "w.bin.lock").symlink_to(victim)
    with pytest.raises(DownloadError, match="w.bin.lock is a symbolic link|lock file"):
        hub.download_url("http://127.0.0.1:9/w.bin", tmp_path / "w.bin", progress=False)
    assert victim.read_text() == "precious"
    with pytest.raises(CheckpointError, match="not a regular file"), file_lock(
            tmp_path / "w.bin.lock"):
        pass


def test_a_partial_download_that_is_a_link_is_refused_and_its_target_kept(tmp_path,
                                                                         monkeypatch):
    """Before: vitzoo appended the download to whatever ``<dst>.part`` pointed to."""
    monkeypatch.delenv("VITZOO_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "w.bin.part").symlink_to(victim)
    with pytest.raises(DownloadError, match="w.bin.part: it is a symbolic link"):
        hub.download_url("http://127.0.0.1:9/w.bin", tmp_path / "w.bin", progress=False)
    assert victim.read_text() == "precious"


def test_a_download_destination_that_is_a_directory_is_a_clear_error(tmp_path):
    (tmp_path / "w.bin").mkdir()
    with pytest.raises(DownloadError, match="it is a directory"):
        hub.download_url("http://127.0.0.1:9/w.bin", tmp_path / "w.bin", progress=False)


# -- 3. writes ------------------------------------------------------------------------------------
def test_a_full_disk_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    dst = vitzoo.save_model(vitzoo.build_model(tiny_cfg()), tmp_path / "m.safetensors")
    old = dst.read_bytes()

    def full_disk(path, tensors, metadata=None, **_options):
        Path(path).write_bytes(b"half a fi")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(vitzoo.io, "write_safetensors", full_disk)
    with pytest.raises(CheckpointError, match="cannot write .*m.safetensors: No space left on "
                                              "device; nothing was written and the previous"):
        vitzoo.save_model(vitzoo.build_model(tiny_cfg(num_classes=3)), dst)
    assert dst.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_atomic_path_turns_os_errors_into_clear_errors(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("kept")
    with pytest.raises(CheckpointError, match="dir is a directory"), \
            atomic_path(tmp_path / "dir"):
        raise AssertionError("the block must not run")
    with pytest.raises(CheckpointError, match="must be a writable directory"), \
            atomic_path(tmp_path / "file" / "x.bin"):
        raise AssertionError("the block must not run")
    with pytest.raises(VitzooError, match="cannot write"), atomic_path(tmp_path / "n") as tmp:
        tmp.write_bytes(b"x")
        raise OSError(errno.EIO, "Input/output error")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]
    assert (tmp_path / "file").read_text() == "kept" and list((tmp_path / "dir").iterdir()) == []


def test_converting_onto_a_directory_is_a_checkpoint_error(tmp_path):
    src = vitzoo.save_model(jax_model(), tmp_path / "m.safetensors")
    (tmp_path / "out.npz").mkdir()
    (tmp_path / "out.npz" / "inside").write_text("kept")
    with pytest.raises(CheckpointError, match="out.npz is a directory"):
        vitzoo.convert_checkpoint(src, tmp_path / "out.npz")
    (tmp_path / "hf").write_text("kept")
    with pytest.raises(CheckpointError, match="it is a file"):
        vitzoo.convert_checkpoint(src, tmp_path / "hf", target_format="hf")
    with pytest.raises(CheckpointError, match="it is a file, not a directory"):
        vitzoo.save_pretrained(jax_model(), tmp_path / "hf")
    assert (tmp_path / "out.npz" / "inside").read_text() == "kept"
    assert (tmp_path / "hf").read_text() == "kept"


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_a_failed_convert_verify_command_keeps_the_old_destination(
        tmp_path, verification_off_by_a_little, capsys, suffix):
    model = jax_model()
    npz = tmp_path / "m.npz"
    np.savez(npz, **jax_npz.from_vitzoo({k: v.numpy() for k, v in model.state_dict().items()},
                                        num_heads=4))
    src = vitzoo.convert_checkpoint(npz, tmp_path / "m.safetensors") if suffix == ".npz" \
        else npz
    dst = tmp_path / f"out{suffix}"
    dst.write_bytes(b"the previous conversion")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["convert", str(src), str(dst), "--verify", "--quiet"]) == 2
    assert "was not written" in capsys.readouterr().err
    assert dst.read_bytes() == b"the previous conversion"
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(VerificationError):
        vitzoo.convert_checkpoint(src, dst, verify=True)
    assert dst.read_bytes() == b"the previous conversion"


# -- downloads from a local server (conftest's ``server``) ---------------------------------------
@pytest.fixture
def google_npz(server) -> tuple[str, str, torch.nn.Module]:
    """A tiny Google .npz served at ``/vit_models/m.npz``: (url, sha256, model)."""
    model = jax_model()
    arrays = jax_npz.from_vitzoo({k: v.numpy() for k, v in model.state_dict().items()},
                                 num_heads=4)
    import io as stdio

    buffer = stdio.BytesIO()
    np.savez(buffer, **arrays)
    server.files["/vit_models/m.npz"] = buffer.getvalue()
    return (server.url + "/vit_models/m.npz", hashlib.sha256(buffer.getvalue()).hexdigest(),
            model)


def _same_outputs(path: Path, model: torch.nn.Module) -> None:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(vitzoo.load_model(path)(x), model(x), atol=1e-6, rtol=0)


def _join(children: list, timeout: float = 180) -> list[int | None]:
    end = time.monotonic() + timeout
    for child in children:
        child.join(timeout=max(end - time.monotonic(), 1))
    codes = [child.exitcode for child in children]
    for child in children:
        if child.is_alive():
            child.kill()
    return codes


# -- 4. concurrency -------------------------------------------------------------------------------
def test_four_processes_converting_one_entry_make_one_intact_copy(server, google_npz):
    url, digest, model = google_npz
    server.delay = 0.3  # the first holds the lock while the others wait on it
    ctx = multiprocessing.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(4)
    children = [ctx.Process(target=worker.resolve_in_child, args=(url, digest, barrier, queue))
                for _ in range(4)]
    for child in children:
        child.start()
    assert _join(children) == [0, 0, 0, 0]
    results = [queue.get(timeout=10) for _ in range(4)]
    target = hub.converted_path(worker.tiny_entry(url, digest))
    assert {path for path, _ in results} == {str(target)}
    assert {sha for _, sha in results} == {hashlib.sha256(target.read_bytes()).hexdigest()}
    assert len(server.requests) == 1  # one download, one conversion
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "model.safetensors", "model.safetensors.lock"]
    assert sorted(p.name for p in (hub.cache_dir() / "downloads").iterdir()) == ["m.npz.lock"]
    _same_outputs(target, model)


# -- 5. crashes -----------------------------------------------------------------------------------
def _wait_for(condition, what: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_conversion_killed_mid_write_leaves_no_partial_file_and_the_rerun_succeeds(
        server, google_npz, tmp_path):
    url, digest, model = google_npz
    entry = worker.tiny_entry(url, digest)
    target = hub.converted_path(entry)
    marker = tmp_path / "stalled"
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=worker.convert_and_stall, args=(url, digest, str(marker)))
    child.start()
    try:
        _wait_for(lambda: marker.exists() or not child.is_alive(), "the child to stall")
        assert child.is_alive()
        temps = list(target.parent.glob(".model.safetensors.*.tmp"))
        assert len(temps) == 1 and temps[0].stat().st_size > 0  # the torn half-file
    finally:
        child.kill()  # SIGKILL: no cleanup runs
        child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert not target.exists() and hub.cached_weights() == []  # nothing a reader would take
    with deadline(60):  # the dead child's lock does not block us
        path = hub.resolve_weights(entry, progress=False)
    assert path == target
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "model.safetensors", "model.safetensors.lock"]  # the torn temporary was removed
    assert len(server.requests) == 1  # the child's verified download was reused
    _same_outputs(target, model)


def test_a_download_killed_mid_transfer_leaves_only_a_part_file_and_resumes(server, tmp_path):
    payload = bytes(range(256)) * 4096 * 4  # 4 MiB
    digest = hashlib.sha256(payload).hexdigest()
    server.files["/w.bin"] = payload
    server.stall = True
    dst = tmp_path / "w.bin"
    part = tmp_path / "w.bin.part"
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=worker.download_in_child,
                        args=(server.url + "/w.bin", str(dst), digest))
    child.start()
    try:
        _wait_for(lambda: part.exists() and part.stat().st_size >= len(payload) // 2
                  or not child.is_alive(), "half of the download")
        assert child.is_alive()
    finally:
        child.kill()
        child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert not dst.exists()
    assert part.read_bytes() == payload[: len(payload) // 2]
    server.stall = False
    with deadline(60):
        got = hub.download_url(server.url + "/w.bin", dst, sha256=digest, progress=False)
    assert got.read_bytes() == payload and not part.exists()
    assert server.requests[-1] == ("/w.bin", f"bytes={len(payload) // 2}-")  # resumed
    assert file_digest(got) == digest
