"""Shared helpers: tiny configs keep every test fast."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import vitzoo
from _http_server import FileServer
from vitzoo import registry

if os.environ.get("PYTEST_XDIST_WORKER"):  # tests in parallel processes: one thread each, so
    torch.set_num_threads(1)               # that the workers do not fight over the cores


def tiny_cfg(**overrides) -> vitzoo.ViTConfig:
    """A 2-block, 32-wide ViT on 32x32 images (16 patches of 8x8), 5 classes."""
    base = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_dim=64,
                num_classes=5)
    return vitzoo.ViTConfig(**{**base, **overrides})


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_network_and_private_caches(tmp_path_factory, monkeypatch) -> None:
    """No test reaches the internet, and none sees the machine's own caches."""
    root = tmp_path_factory.mktemp("caches")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VITZOO_OFFLINE", "1")
    monkeypatch.setenv("VITZOO_CACHE", str(root / "vitzoo"))
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("VITZOO_WEIGHTS_DIR", raising=False)


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Undo any registration a test makes."""
    tables = (registry._BUILDERS, registry._ARCHS, registry._ALIASES, registry._MODULES)
    saved = [dict(table) for table in tables]
    yield
    for table, before in zip(tables, saved, strict=True):
        table.clear()
        table.update(before)


def random_weights(model: torch.nn.Module, scale: float = 0.2, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (norm scales around 1), so each one shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * scale
            is_scale = name.endswith(("norm.weight", "norm1.weight", "norm2.weight",
                                      "norm3.weight"))
            p.copy_(noise + (1.0 if is_scale else 0.0))
    return model


def jax_model(**overrides) -> vitzoo.VisionTransformer:
    """A tiny model with Google's numerics (tanh GELU) and random weights, in eval mode."""
    cfg = tiny_cfg(gelu_approximate="tanh", weight_init="jax", **overrides)
    return random_weights(vitzoo.build_model(cfg)).eval()


@pytest.fixture
def verification_off_by_a_little(monkeypatch) -> None:
    """Google's reference forward pass shifted by 1e-3, so every verification fails."""
    import vitzoo.reference.verify as verify

    real = verify.jax_vit_forward

    def forward(*args, **kwargs):
        out = real(*args, **kwargs)
        out["logits"] = out["logits"] + 1e-3
        return out

    monkeypatch.setattr(verify, "jax_vit_forward", forward)


@pytest.fixture
def server(monkeypatch) -> Iterator[FileServer]:
    """A file server on 127.0.0.1 (tests/_http_server.py), with the network switch on."""
    monkeypatch.delenv("VITZOO_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    s = FileServer()
    yield s
    s.close()


def hf_cache_with(repo_id: str, state: dict[str, torch.Tensor]) -> Path:
    """Write ``repo_id``'s model.safetensors in huggingface_hub's cache layout (blobs, refs,
    snapshots), as a download leaves it."""
    hub = Path(os.environ["HF_HOME"]) / "hub"
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    tmp = repo / "tmp.safetensors"
    repo.mkdir(parents=True, exist_ok=True)
    save_file(state, str(tmp), metadata={"format": "pt"})
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    (repo / "blobs").mkdir(exist_ok=True)
    tmp.rename(repo / "blobs" / digest)
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(f"../../blobs/{digest}")
    return snapshot / "model.safetensors"


def record_figures(monkeypatch) -> list:
    """Every matplotlib Figure saved from now on (drawn, so tick labels are filled in)."""
    from matplotlib.figure import Figure

    saved: list = []
    real = Figure.savefig

    def savefig(self, *args, **kwargs):
        real(self, *args, **kwargs)
        saved.append(self)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved
