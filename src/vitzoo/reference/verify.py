"""Check a converted model against Google's forward pass written independently in NumPy."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from ..adapters.jax_npz import select_params
from ..config import ViTConfig
from ..errors import VerificationError
from ..io import read_npz
from .jax_numpy import jax_vit_forward

__all__ = ["VerificationError", "verify_against_jax"]

def verify_against_jax(npz_path: str | Path, model: nn.Module, *, atol: float = 1e-5,
                       batch: int = 2, seed: int = 0) -> float:
    """Max absolute difference between ``model`` and the NumPy reference on random images.

    The reference runs in float64 over the ``.npz`` file's own arrays; the model runs in
    float32 on the CPU. Logits are compared when the model has a head, otherwise the pooled
    features.

    Raises:
        VerificationError: the difference exceeds ``atol``.
    """
    params = select_params(read_npz(npz_path))
    cfg = cast(ViTConfig, model.cfg)  # a vitzoo VisionTransformer's config
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1.0, 1.0, size=(batch, *cfg.img_size, cfg.in_chans))  # NHWC
    posemb = "sincos2d" if cfg.pos_embed == "sincos" else None
    reference = jax_vit_forward(params, images, posemb=posemb)
    expected = reference["logits"] if cfg.num_classes else reference["pre_logits"]
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32))
    with torch.no_grad():
        got = model.eval().float().cpu()(x).double().numpy()
    if got.shape != expected.shape:
        raise VerificationError(
            f"the converted model gives {got.shape}, the reference {expected.shape}"
        )
    diff = float(np.abs(got - expected).max())
    if not diff <= atol:
        raise VerificationError(
            f"the converted model differs from Google's forward pass by {diff:.3g} "
            f"(tolerance {atol:g}); the conversion was not written"
        )
    return diff
