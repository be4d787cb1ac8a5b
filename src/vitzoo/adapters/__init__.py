"""Converters between other formats and vitzoo's state dict: one pure module per format.

``jax_npz`` handles Google's ``.npz`` files (read through :func:`vitzoo.load_model`); the
PyTorch-layout formats below are detected from their key names.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from . import deit3, dinov2, hf_transformers, open_clip, timm, torchvision, vit_pytorch

__all__ = ["STATE_DICT_FORMATS", "convert_state_dict", "detect_format"]

# Checked in this order: the first whose detect() accepts the keys wins.
STATE_DICT_FORMATS = {
    "vit_pytorch": vit_pytorch,
    "torchvision": torchvision,
    "hf_transformers": hf_transformers,
    "dinov2": dinov2,
    "deit3": deit3,
    "open_clip": open_clip,
    "timm": timm,
}


def detect_format(state: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the layout of ``state`` (a key of ``STATE_DICT_FORMATS``), or None."""
    for name, module in STATE_DICT_FORMATS.items():
        if module.detect(state):
            return name
    return None


def convert_state_dict(state: Mapping[str, torch.Tensor], source_format: str = "auto"
                       ) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """``state`` in vitzoo's names: ``(tensors, format, keys with no vitzoo place)``.

    Raises:
        ValueError: the format is unknown or cannot be detected.
    """
    if source_format == "auto":
        found = detect_format(state)
        if found is None:
            sample = ", ".join(list(state)[:4])
            raise ValueError(f"cannot tell which library wrote this state dict (keys: {sample}, "
                             f"...); pass source_format= one of {', '.join(STATE_DICT_FORMATS)}")
        source_format = found
    if source_format not in STATE_DICT_FORMATS:
        raise ValueError(f"source_format={source_format!r} is not one of "
                         f"{', '.join(STATE_DICT_FORMATS)} or 'auto'")
    module = STATE_DICT_FORMATS[source_format]
    if source_format == "timm":
        return module.to_vitzoo(state), source_format, []
    converted, unmatched = module.to_vitzoo(state)
    return converted, source_format, unmatched
