"""No network, recognised as such: a host that does not resolve or a refused connection fails
at once (no retries), names the host, and says how to work offline; a cached copy still
serves. Everything runs on 127.0.0.1 or against a resolver replaced in-process."""

from __future__ import annotations

import dataclasses
import socket
import time

import pytest

import vitzoo
import vitzoo.hub as hub
from vitzoo.cli import main
from vitzoo.errors import DownloadError, NetworkError
from vitzoo.hub import check_reachable, download_url, resolve_weights

from conftest import hf_cache_with, random_weights

GUIDANCE = ("HF_HUB_OFFLINE=1", "vitzoo download", "--to DIR", "VITZOO_WEIGHTS_DIR=DIR")


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def online(monkeypatch):
    """The network switch on (the suite's default is offline), no proxies, no probe memory."""
    monkeypatch.delenv("VITZOO_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy",
                "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub, "_REACHED", set())


@pytest.fixture
def no_dns(online, monkeypatch):
    """A resolver that knows no name, counting the lookups; huggingface_hub must not run."""
    lookups: list[str] = []

    def getaddrinfo(host, *args, **kwargs):
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def hf_hub_download(*args, **kwargs):
        if not kwargs.get("local_files_only"):
            raise AssertionError("huggingface_hub was asked to download without a network")
        from huggingface_hub.errors import LocalEntryNotFoundError

        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", hf_hub_download)
    return lookups


def _entry(**changes):
    entry = vitzoo.pretrained.get_entry("vit_base_patch16_224", "augreg_in21k")
    return dataclasses.replace(entry, **changes)


def test_a_refused_connection_fails_at_once_and_leaves_nothing(online, tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/w.npz"
    start = time.monotonic()
    with pytest.raises(NetworkError, match=r"cannot reach 127\.0\.0\.1:\d+") as info:
        download_url(url, tmp_path / "w.npz", retries=5)
    assert time.monotonic() - start < 1.0  # no retries, no back-off
    for part in GUIDANCE:
        assert part in str(info.value)
    assert isinstance(info.value, DownloadError)  # `except DownloadError` code still catches it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz.lock"]


def test_without_dns_a_pretrained_model_fails_within_a_second_naming_both_sources(no_dns):
    start = time.monotonic()
    with pytest.raises(NetworkError) as info:
        resolve_weights(_entry(), progress=False)
    assert time.monotonic() - start < 1.0
    message = str(info.value)
    assert "cannot reach huggingface.co:443: the name does not resolve" in message
    assert "cannot reach storage.googleapis.com:443: the name does not resolve" in message
    assert "`vitzoo download vit_base_patch16_224.augreg_in21k --to DIR`" in message
    for part in GUIDANCE:
        assert part in message
    assert no_dns == ["huggingface.co", "storage.googleapis.com"]  # one lookup each, no retry
    assert not (vitzoo.hub.cache_dir() / "downloads").exists()  # nothing half-written


def test_without_dns_create_model_and_the_cli_give_the_guidance(no_dns, capsys):
    with pytest.raises(NetworkError, match="VITZOO_WEIGHTS_DIR"):
        vitzoo.create_model("vit_base_patch16_224.augreg2_in21k_ft_in1k", pretrained=True)
    start = time.monotonic()
    assert main(["download", "vit_b16", "--to", "weights"]) == 2
    assert time.monotonic() - start < 5.0
    err = capsys.readouterr().err
    assert err.startswith("vitzoo: error: cannot reach huggingface.co:443")
    assert "has no None source" not in err
    for part in GUIDANCE:
        assert part in err


def test_an_hf_hub_repo_without_dns_points_to_the_hugging_face_cache(no_dns, monkeypatch):
    monkeypatch.setattr("huggingface_hub.snapshot_download", _no_snapshot)
    with pytest.raises(NetworkError, match=r"`hf download someone/tiny-vit`.*HF_HOME"):
        vitzoo.create_model("hf-hub:someone/tiny-vit")


def _no_snapshot(*args, local_files_only=False, **kwargs):
    assert local_files_only, "snapshot_download was asked to go online without a network"
    from huggingface_hub.errors import LocalEntryNotFoundError

    raise LocalEntryNotFoundError("not cached")


def test_a_cached_hub_file_still_serves_when_the_hub_is_unreachable(online, monkeypatch):
    name = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    state = {k: v.contiguous() for k, v in
             random_weights(vitzoo.create_model("vit_tiny_patch16_224")).state_dict().items()}
    path = hf_cache_with(f"timm/{name}", state)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    entry = vitzoo.pretrained.get_entry("vit_tiny_patch16_224", "augreg_in21k_ft_in1k")
    assert resolve_weights(entry, source="hub", progress=False).resolve() == path.resolve()


def test_a_resolver_that_hangs_is_given_up_on(online, monkeypatch):
    monkeypatch.setattr(hub, "PROBE_TIMEOUT", 0.2)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: time.sleep(5) or [])
    start = time.monotonic()
    with pytest.raises(NetworkError, match="did not resolve within 0.2 s"):
        check_reachable("https://example.org/w.npz")
    assert time.monotonic() - start < 1.0


def test_a_reachable_host_is_probed_once(online, server):
    server.files["/w.bin"] = b"x" * 100
    check_reachable(server.url + "/w.bin")
    assert hub._REACHED == {("127.0.0.1", int(server.url.rsplit(":", 1)[1]))}
    assert server.requests == []  # a connection only, no request


def test_the_probe_goes_to_the_proxy_unless_no_proxy_says_otherwise(online, monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    assert hub._connect_target("https://huggingface.co/x") == ("127.0.0.1", port)
    with pytest.raises(NetworkError, match=rf"cannot reach 127\.0\.0\.1:{port}"):
        check_reachable("https://huggingface.co/x")
    monkeypatch.setenv("NO_PROXY", "huggingface.co")
    assert hub._connect_target("https://huggingface.co/x") == ("huggingface.co", 443)
    assert hub._connect_target("http://example.org:8080/x") == ("example.org", 8080)


def test_source_without_that_place_says_so(online):
    entry = _entry(url=None)
    with pytest.raises(vitzoo.VitzooError, match="has no weights at an original URL"):
        resolve_weights(entry, source="url", progress=False)
