"""Datasets named on the command line: ``digits``, ``cifar10[:PATH]``, ``cifar100[:PATH]``,
``folder:PATH`` or a directory."""

from __future__ import annotations

from pathlib import Path

from ..hub import cache_dir
from .datasets import CIFAR, DatasetError, Digits, ImageFolder, LabelledImages

__all__ = ["open_dataset"]

_SPLITS = {True: ("train",), False: ("val", "validation", "test")}


def open_dataset(spec: str, *, train: bool) -> LabelledImages:
    """The train or evaluation split of the dataset ``spec`` names.

    - ``digits``: the bundled 8x8 digits (a fixed stratified 80/20 split);
    - ``cifar10:PATH`` / ``cifar100:PATH``: the official python archive or its folder; without
      ``:PATH`` the archive is downloaded (checksummed) into vitzoo's cache when online;
    - ``folder:PATH`` or a directory: an image folder (one sub-directory per class); when it has
      ``train/`` and ``val/`` (or ``validation/``, ``test/``) sub-folders those are the splits,
      otherwise the whole folder is the evaluation set.

    Raises:
        DatasetError: an unknown spec, a ``folder:PATH`` that is not an existing directory, or
            a folder without the split asked for.
    """
    name, _, location = spec.partition(":")
    if spec == "digits":
        return Digits(train=train)
    if name in ("cifar10", "cifar100"):
        if location:
            source = Path(location)
        else:
            source = CIFAR.download(cache_dir() / "datasets", variant=name)
        return CIFAR(source, train=train)
    root = Path(location if name == "folder" else spec)
    if name == "folder" and not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DatasetError(f"the folder {root} {what}: folder:PATH needs a directory of class "
                           "folders (or with train/ and val/ sub-folders of them)")
    if not root.is_dir():
        raise DatasetError(f"unknown dataset {spec!r}: use digits, cifar10[:PATH], "
                           "cifar100[:PATH], folder:PATH or a directory of class folders")
    for split in _SPLITS[train]:
        if (root / split).is_dir():
            return ImageFolder(root / split)
    if train:
        raise DatasetError(f"{root} has no train/ folder; put the training images in "
                           f"{root / 'train'}/<class>/ and the evaluation ones in "
                           f"{root / 'val'}/<class>/")
    return ImageFolder(root)
