"""One pretrained weight set: where it lives, what it expects, and how it computes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CLIP_MEAN", "CLIP_STD", "GOOGLE_MEAN", "GOOGLE_STD", "GOOGLE_PREPROCESSING", "HF_FILE",
           "IMAGENET_MEAN", "IMAGENET_STD", "PretrainedEntry", "numerics_of"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GOOGLE_MEAN = (0.5, 0.5, 0.5)  # pixels to [-1, 1]
GOOGLE_STD = (0.5, 0.5, 0.5)
# What Google's own code feeds its models: pixels to [-1, 1], resized (bilinear) without a crop.
GOOGLE_PREPROCESSING = {"mean": GOOGLE_MEAN, "std": GOOGLE_STD, "interpolation": "bilinear",
                        "crop_pct": 1.0}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

HF_FILE = "model.safetensors"


def numerics_of(origin: str | None) -> dict[str, Any]:
    """The ViTConfig fields that make a model compute as weights of ``origin`` need: tanh
    GELU and Google's position-table zoom for ``"jax"``, exact GELU otherwise (the
    architecture's own resampling rule and LayerNorm eps are kept)."""
    if origin == "jax":
        return {"gelu_approximate": "tanh", "pos_embed_resample": "scipy"}
    return {"gelu_approximate": "none"}


@dataclass(frozen=True)
class PretrainedEntry:
    """An ``arch.tag``: sources, preprocessing, numerics of its origin, provenance.

    ``origin`` is ``"jax"`` for weights trained in Google's JAX code (run with tanh GELU) and
    ``"pytorch"`` for weights trained in PyTorch (exact GELU); LayerNorm eps is 1e-6 for both.
    """

    arch: str
    tag: str
    num_classes: int
    img_size: int
    origin: str
    hf_hub_id: str | None = None
    url: str | None = None
    url_format: str | None = None
    """``"jax_npz"`` (converted once to safetensors) or ``"pth"`` (timm's key layout)."""
    sha256: str | None = None
    """The url file's sha256, or its leading hex digits (DeiT names its files by them)."""
    mean: tuple[float, float, float] = GOOGLE_MEAN
    std: tuple[float, float, float] = GOOGLE_STD
    crop_pct: float = 0.9
    crop_mode: str = "center"
    """``"center"`` (resize the short side, centre crop) or ``"squash"`` (resize both sides)."""
    interpolation: str = "bicubic"
    license: str = "apache-2.0"
    paper: str = ""
    top1: float | None = None
    """ImageNet-1k top-1 reported for these weights, when known (``top1_protocol`` says how
    it was measured; empty: timm's evaluation of the classifier)."""
    top1_protocol: str = ""
    """``"zero-shot"`` (CLIP, SigLIP), ``"linear probe"`` / ``"k-NN"`` (DINOv2 features) ..."""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Further timm ``pretrained_cfg`` keys of these weights (``origin_url``, ``paper_ids``)."""
    config: dict[str, Any] = field(default_factory=dict, compare=False)
    """ViTConfig fields these weights need beyond their origin's numerics (QuickGELU for
    OpenAI's CLIP weights)."""

    @property
    def name(self) -> str:
        return f"{self.arch}.{self.tag}"

    @property
    def has_weights(self) -> bool:
        return bool(self.hf_hub_id or self.url)

    @property
    def numerics(self) -> dict[str, Any]:
        """The ViTConfig fields that make a model compute as the weights' own framework did
        (Google's weights also resize position embeddings with Google's zoom)."""
        return {**numerics_of(self.origin), **self.config}

    def to_dict(self) -> dict[str, Any]:
        """The entry as pretrained-cfg keys (timm's, then vitzoo's)."""
        return {
            "architecture": self.arch, "tag": self.tag, "num_classes": self.num_classes,
            "custom_load": self.url_format == "jax_npz", "notes": self.notes or None,
            "input_size": (3, self.img_size, self.img_size), "mean": self.mean, "std": self.std,
            "crop_pct": self.crop_pct, "crop_mode": self.crop_mode,
            "interpolation": self.interpolation,
            "origin": self.origin, "hf_hub_id": self.hf_hub_id, "url": self.url,
            "sha256": self.sha256, "license": self.license, "paper": self.paper,
            "top1": self.top1, "top1_protocol": self.top1_protocol or None, **self.extra,
        }
