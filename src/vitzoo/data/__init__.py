"""Data loading and preprocessing: transforms in pure torch, datasets, ImageNet class names."""

from __future__ import annotations

from .class_names import imagenet_class_names, imagenet_wnids
from .datasets import CIFAR, DatasetError, Digits, ImageFolder, LabelledImages
from .images import MAX_IMAGE_PIXELS, open_image
from .pipeline import create_transform, resolve_data_config, resolve_model_data_config
from .specs import open_dataset
from .transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    EnsureChannels,
    Normalize,
    RandomApply,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomVerticalFlip,
    Resize,
    ToTensor,
)

__all__ = [
    "CIFAR",
    "CenterCrop",
    "ColorJitter",
    "Compose",
    "DatasetError",
    "Digits",
    "EnsureChannels",
    "ImageFolder",
    "LabelledImages",
    "MAX_IMAGE_PIXELS",
    "Normalize",
    "RandomApply",
    "RandomGrayscale",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "RandomVerticalFlip",
    "Resize",
    "ToTensor",
    "create_transform",
    "imagenet_class_names",
    "imagenet_wnids",
    "open_dataset",
    "open_image",
    "resolve_data_config",
    "resolve_model_data_config",
]
