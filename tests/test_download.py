"""The URL downloader against a local HTTP server on 127.0.0.1: checksums, resume, concurrency."""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch

import vitzoo
from vitzoo.adapters import jax_npz
from vitzoo.hub import DownloadError, OfflineError, download_url, resolve_weights

from conftest import jax_model

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_checks_sha256_and_leaves_no_partial_file(server, tmp_path):
    server.files["/w.bin"] = PAYLOAD
    dst = download_url(server.url + "/w.bin", tmp_path / "w.bin", sha256=DIGEST, progress=False)
    assert dst.read_bytes() == PAYLOAD
    assert not (tmp_path / "w.bin.part").exists()
    download_url(server.url + "/w.bin", dst, sha256=DIGEST, progress=False)  # cached: no request
    assert len(server.requests) == 1
    prefix = tmp_path / "p.bin"
    download_url(server.url + "/w.bin", prefix, sha256=DIGEST[:8], progress=False)
    assert prefix.read_bytes() == PAYLOAD  # a digest prefix, as DeiT's file names carry


def test_a_corrupted_file_is_rejected_and_nothing_is_cached(server, tmp_path):
    server.files["/w.bin"] = PAYLOAD[:-1] + b"\x00"
    with pytest.raises(DownloadError, match="does not match the expected"):
        download_url(server.url + "/w.bin", tmp_path / "w.bin", sha256=DIGEST, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin.lock"]


def test_an_interrupted_transfer_resumes_where_it_stopped(server, tmp_path):
    server.files["/w.bin"] = PAYLOAD
    server.truncate_first.add("/w.bin")
    dst = download_url(server.url + "/w.bin", tmp_path / "w.bin", sha256=DIGEST, progress=False)
    assert dst.read_bytes() == PAYLOAD
    assert server.requests[0] == ("/w.bin", None)
    assert server.requests[1] == ("/w.bin", f"bytes={len(PAYLOAD) // 2}-")


def test_missing_files_fail_at_once(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_url(server.url + "/nope.bin", tmp_path / "nope.bin", progress=False)
    assert len(server.requests) == 1


def _download_in_child(url: str, dst: str, digest: str, queue) -> None:
    path = download_url(url, dst, sha256=digest, progress=False)
    queue.put(hashlib.sha256(Path(path).read_bytes()).hexdigest())


def test_two_processes_downloading_the_same_file_make_one_copy(server, tmp_path):
    big = PAYLOAD * 8
    server.files["/big.bin"] = big
    digest = hashlib.sha256(big).hexdigest()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    children = [ctx.Process(target=_download_in_child,
                            args=(server.url + "/big.bin", str(tmp_path / "big.bin"), digest,
                                  queue)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    assert [queue.get(timeout=5), queue.get(timeout=5)] == [digest, digest]
    assert len([r for r in server.requests if r[0] == "/big.bin"]) == 1  # one transfer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin", "big.bin.lock"]


def test_offline_downloads_say_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("VITZOO_OFFLINE", "1")
    with pytest.raises(OfflineError, match="w.bin is not in .* its source is http://x/w.bin"):
        download_url("http://x/w.bin", tmp_path / "w.bin")


def test_a_google_npz_is_downloaded_once_and_kept_converted(server, tmp_path, images):
    model = jax_model()
    arrays = jax_npz.from_vitzoo({k: v.numpy() for k, v in model.state_dict().items()},
                                 num_heads=4)
    npz = tmp_path / "m.npz"
    np.savez(npz, **arrays)
    server.files["/vit_models/m.npz"] = npz.read_bytes()
    entry = dataclasses.replace(vitzoo.pretrained.get_entry("vit_tiny_patch16_224", None),
                                url=server.url + "/vit_models/m.npz", hf_hub_id=None,
                                sha256=hashlib.sha256(npz.read_bytes()).hexdigest())
    path = resolve_weights(entry, progress=False)
    assert path.name == "model.safetensors" and path.parent.name == entry.name
    assert not list((vitzoo.hub.cache_dir() / "downloads").glob("*.npz"))  # converted, dropped
    loaded = vitzoo.load_model(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), atol=1e-6, rtol=0)
    assert resolve_weights(entry, progress=False) == path
    assert len(server.requests) == 1


def test_a_failing_hub_falls_back_to_the_original_url(server, tmp_path, monkeypatch):
    import vitzoo.hub as hub

    torch.save({"model": {"cls_token": torch.zeros(1, 1, 4)}}, tmp_path / "deit.pth")
    server.files["/deit.pth"] = (tmp_path / "deit.pth").read_bytes()

    def hub_down(*args, **kwargs):
        if kwargs.get("local_only"):
            return None
        raise hub.DownloadError("cannot download model.safetensors from timm/x: offline hub")

    monkeypatch.setattr(hub, "_hf_download", hub_down)
    entry = dataclasses.replace(vitzoo.pretrained.get_entry("deit_tiny_patch16_224", None),
                                url=server.url + "/deit.pth", sha256=None)
    path = resolve_weights(entry, progress=False)
    assert path.name == "model.safetensors"
    from safetensors.torch import load_file

    assert list(load_file(str(path))) == ["cls_token"]
    with pytest.raises(DownloadError, match="offline hub"):
        resolve_weights(entry, source="hub", progress=False)


@pytest.mark.parametrize("file, url_format", [
    ("clip/openai_tiny.pt", "openai_clip"),  # OpenAI's TorchScript release, converted once
    ("dinov2/reg4.pth", "pth"),  # a DINOv2 hub .pth, kept in its layout, read by its adapter
])
def test_an_original_release_file_is_downloaded_and_read_as_its_release(server, file,
                                                                        url_format):
    data = Path(__file__).parent / "data" / file
    server.files["/" + data.name] = data.read_bytes()
    entry = dataclasses.replace(
        vitzoo.pretrained.get_entry("vit_base_patch16_clip_224", "openai"), hf_hub_id=None,
        url=server.url + "/" + data.name, url_format=url_format,
        sha256=hashlib.sha256(data.read_bytes()).hexdigest())
    path = resolve_weights(entry, progress=False)
    expected = vitzoo.load_model(data)
    if url_format == "openai_clip":  # self-describing now: the tower and its QuickGELU
        got = vitzoo.load_model(path)
        assert got.cfg == expected.cfg and got.cfg.act_layer == "quick_gelu"
    else:
        got = vitzoo.load_model(data).eval()
        vitzoo.load_checkpoint(got, path)  # the raw layout, read by the dinov2 adapter
    x = torch.rand(1, 3, *expected.cfg.img_size)
    with torch.no_grad():
        assert torch.equal(got(x), expected(x))
