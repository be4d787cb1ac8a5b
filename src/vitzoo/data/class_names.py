"""ImageNet-1k class names and WordNet ids, in the index order of ImageNet-1k classifiers.

Names are the first lemma of each class's WordNet 3.0 synset (resources/imagenet1k_classes.txt).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

__all__ = ["imagenet_class_names", "imagenet_wnids"]


@lru_cache(maxsize=1)
def _imagenet1k() -> tuple[tuple[str, str], ...]:
    text = resources.files("vitzoo.data").joinpath("resources/imagenet1k_classes.txt").read_text(
        encoding="utf-8")
    rows = tuple(tuple(line.split("\t", 1)) for line in text.splitlines()
                 if line and not line.startswith("#"))
    if len(rows) != 1000 or any(len(row) != 2 for row in rows):
        raise RuntimeError("vitzoo's imagenet1k_classes.txt is damaged; reinstall vitzoo")
    return rows  # type: ignore[return-value]


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names by index (``[0] == "tench"``).

    Two names repeat as in WordNet ("crane", "maillot"); :func:`imagenet_wnids` is unique.

    Returns:
        A new list of 1,000 names.
    """
    return [name for _, name in _imagenet1k()]


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids by index (``[0] == "n01440764"``), sorted.

    Returns:
        A new list of 1,000 wnids.
    """
    return [wnid for wnid, _ in _imagenet1k()]
