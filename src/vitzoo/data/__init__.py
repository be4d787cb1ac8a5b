"""Data loading and preprocessing: transforms in pure torch, datasets, ImageNet class names."""

from __future__ import annotations

from .class_names import imagenet_class_names, imagenet_wnids
from .datasets import CIFAR, DatasetError, Digits, ImageFolder
from .specs import open_dataset
from .transforms import (
    CenterCrop,
    Compose,
    EnsureChannels,
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
    create_transform,
    resolve_data_config,
)

__all__ = [
    "CIFAR",
    "CenterCrop",
    "Compose",
    "DatasetError",
    "Digits",
    "EnsureChannels",
    "ImageFolder",
    "Normalize",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "Resize",
    "ToTensor",
    "create_transform",
    "imagenet_class_names",
    "imagenet_wnids",
    "open_dataset",
    "resolve_data_config",
]
