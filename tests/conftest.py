"""Shared helpers: tiny configs keep every test fast."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import vitzoo
from vitzoo import registry


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


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Undo any registration a test makes."""
    builders = dict(registry._BUILDERS)
    aliases = dict(registry._ALIASES)
    yield
    registry._BUILDERS.clear()
    registry._BUILDERS.update(builders)
    registry._ALIASES.clear()
    registry._ALIASES.update(aliases)
