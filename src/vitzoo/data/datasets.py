"""Datasets that yield ``(transform(image), label)``: CIFAR, a folder of images, 8x8 digits.

CIFAR-10 / CIFAR-100: Krizhevsky, "Learning Multiple Layers of Features from Tiny Images"
(2009), read from the official python archives. Digits: Alpaydin & Kaynak, UCI "Optical
Recognition of Handwritten Digits" (1998), bundled (resources/DIGITS_LICENSE.txt).
"""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from .. import hub
from .._utils import file_digest
from ..errors import DatasetError
from .images import open_image, pil_image_module

__all__ = ["CIFAR", "DatasetError", "Digits", "ImageFolder", "LabelledImages"]

LabelledImages = Dataset[tuple[Any, int]]
"""A map-style dataset of ``(image, label)`` items (what the datasets here and the training
loop use): ``image`` an array, a PIL image or a tensor, ``label`` the class index."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class _CifarLayout:
    folder: str
    archive: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    labels_key: bytes
    names_key: bytes
    md5: str


_CIFAR = {
    "cifar10": _CifarLayout(
        folder="cifar-10-batches-py", archive="cifar-10-python.tar.gz",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)), test=("test_batch",),
        meta="batches.meta", labels_key=b"labels", names_key=b"label_names",
        md5="c58f30108f718f92721af3b95e74349a"),
    "cifar100": _CifarLayout(
        folder="cifar-100-python", archive="cifar-100-python.tar.gz", train=("train",),
        test=("test",), meta="meta", labels_key=b"fine_labels", names_key=b"fine_label_names",
        md5="eb9058c3a382ffc7106e4002c42a8d85"),
}
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"


def _array_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]  # numpy.core types it Any
    # Python 2 wrote numpy.core, numpy 2 writes numpy._core; Python 3 protocol-2 pickles spell
    # bytes as _codecs.encode(str, "latin1").
    return {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): codecs.encode}


class _ArrayUnpickler(pickle.Unpickler):
    # A pickle can call any importable function; a CIFAR batch needs only numpy's array
    # reconstruction, so everything else is refused before it is even imported.
    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")
        self.name = name
        self.allowed = _array_globals()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise DatasetError(f"{self.name}: the pickle asks for {module}.{name}, which a CIFAR "
                               f"batch never contains; refusing to load it. Use the official "
                               f"archive from {_CIFAR_URL}")
        return self.allowed[(module, name)]


def _unpickle(data: bytes, name: str) -> dict[bytes, Any]:
    try:
        obj = _ArrayUnpickler(data, name).load()
    except DatasetError:
        raise
    except Exception as err:  # whatever untrusted bytes break, the file is bad
        raise DatasetError(f"{name} is not a readable pickle ({err}); download the dataset "
                           f"again with CIFAR.download()") from err
    if not isinstance(obj, dict):
        raise DatasetError(f"{name} holds a {type(obj).__name__}, not a CIFAR dict")
    return obj


def _read_archive(archive: Path, wanted: set[str]) -> dict[str, bytes]:
    found = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:  # one pass: seeking back in a .tar.gz decompresses it again
                name = member.name.removeprefix("./")
                if member.isfile() and name in wanted:
                    extracted = tar.extractfile(member)
                    assert extracted is not None  # a regular file always has its contents
                    found[name] = extracted.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DatasetError(f"{archive} is not a complete .tar.gz archive ({err}); delete it and "
                           f"download it again with CIFAR.download()") from err
    return found


def _read_folder(folder: Path, wanted: set[str]) -> dict[str, bytes]:
    # The extracted folder may have been renamed, so match file names only (CIFAR-10's and
    # CIFAR-100's file names differ).
    return {path: (folder / path.split("/")[1]).read_bytes() for path in wanted
            if (folder / path.split("/")[1]).is_file()}


def _cifar_array(batch: dict[bytes, Any], layout: _CifarLayout,
                 name: str) -> tuple[np.ndarray, list[int]]:
    data, labels = batch.get(b"data"), batch.get(layout.labels_key)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32 and isinstance(labels, list)
            and len(labels) == len(data)):
        raise DatasetError(f"{name} is not a CIFAR batch: expected b'data' (N, 3072) uint8 and "
                           f"{layout.labels_key!r} with N labels")
    # Each row is 1024 red, 1024 green, then 1024 blue values, each a row-major 32x32 plane.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return np.ascontiguousarray(images), [int(label) for label in labels]


class CIFAR(LabelledImages):
    """CIFAR-10 or CIFAR-100 from the official python version, archive or extracted.

    Items are ``(transform(image), label)`` with ``image`` a uint8 (32, 32, 3) RGB array (or
    the raw array when ``transform`` is None). CIFAR-100 labels are the 100 fine labels.
    The batches are pickles; they are read with an unpickler that only rebuilds numpy
    arrays, so a tampered file cannot run code.

    Args:
        source: ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``, the extracted
            ``cifar-10-batches-py`` / ``cifar-100-python`` folder, or a folder holding either.
        train: the 50,000 training images instead of the 10,000 test images.
        transform: applied to each image.
        variant: ``"cifar10"`` or ``"cifar100"``; None detects it from the files.
    """

    def __init__(self, source: str | Path, *, train: bool = True,
                 transform: Callable[[np.ndarray], Any] | None = None,
                 variant: str | None = None) -> None:
        if variant is not None and variant not in _CIFAR:
            raise DatasetError(f"variant={variant!r} is not one of {', '.join(map(repr, _CIFAR))}")
        layouts = [_CIFAR[variant]] if variant else list(_CIFAR.values())
        source = Path(source)
        if source.is_dir():  # a folder holding the extracted folder or the archive
            for layout in layouts:
                if (source / layout.folder).is_dir() or (source / layout.archive).is_file():
                    inner = source / layout.folder
                    source = inner if inner.is_dir() else source / layout.archive
                    break
        if not source.exists():
            raise DatasetError(f"{source} does not exist; download the dataset with "
                               f"CIFAR.download(root) or from {_CIFAR_URL}")
        wanted = {f"{layout.folder}/{name}" for layout in layouts
                  for name in (*(layout.train if train else layout.test), layout.meta)}
        files = (_read_archive if source.is_file() else _read_folder)(source, wanted)
        present = [layout for layout in layouts if f"{layout.folder}/{layout.meta}" in files]
        if len(present) != 1:
            what = "no CIFAR meta file" if not present else "both CIFAR-10 and CIFAR-100 files"
            raise DatasetError(f"{source} holds {what}; pass the official archive or its "
                               f"extracted folder (or variant= when both are present)")
        self.layout = layout = present[0]
        self.variant = next(k for k, v in _CIFAR.items() if v is layout)
        batches = layout.train if train else layout.test
        missing = [b for b in batches if f"{layout.folder}/{b}" not in files]
        if missing:
            raise DatasetError(f"{source} lacks {', '.join(missing)}; download the complete "
                               f"archive again with CIFAR.download()")
        meta = _unpickle(files[f"{layout.folder}/{layout.meta}"], layout.meta)
        names = meta.get(layout.names_key)
        if not isinstance(names, list):
            raise DatasetError(f"{layout.meta} has no {layout.names_key!r} list")
        self.classes: list[str] = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        parts = [_cifar_array(_unpickle(files[f"{layout.folder}/{b}"], b), layout, b)
                 for b in batches]
        self.data = np.concatenate([images for images, _ in parts])  # (N, 32, 32, 3)
        self.targets: list[int] = [label for _, labels in parts for label in labels]
        self.transform = transform
        self.train = train

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.data[index]
        return (image if self.transform is None else self.transform(image)), self.targets[index]

    @staticmethod
    def download(root: str | Path, variant: str = "cifar10") -> Path:
        """Download the official archive into ``root`` (once) and check its md5.

        Args:
            root: folder to keep ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` in.
            variant: ``"cifar10"`` or ``"cifar100"``.

        Returns:
            The archive's path, ready for ``CIFAR(path)``.
        """
        if variant not in _CIFAR:
            raise DatasetError(f"variant={variant!r} is not one of {', '.join(map(repr, _CIFAR))}")
        layout = _CIFAR[variant]
        Path(root).mkdir(parents=True, exist_ok=True)
        path = hub.download_url(_CIFAR_URL + layout.archive, Path(root) / layout.archive,
                            sha256=None, progress=True)
        md5 = file_digest(path, "md5")
        if md5 != layout.md5:
            path.unlink()
            raise DatasetError(f"{layout.archive} has md5 {md5}, not the official "
                               f"{layout.md5}; it was deleted, download it again")
        return path

    def __repr__(self) -> str:
        return (f"CIFAR(variant={self.variant!r}, train={self.train}, size={len(self)}, "
                f"transform={self.transform!r})")


class ImageFolder(LabelledImages):
    """Images in one sub-folder per class: ``root/<class>/**/<image>``.

    Classes are the sub-folder names sorted (label = position); files are sorted within
    each class. Items are ``(transform(image), label)`` with ``image`` an RGB PIL image.

    Args:
        root: the folder holding one sub-folder per class (hidden folders are skipped).
        transform: applied to each image.
        extensions: file suffixes counted as images (case-insensitive).
    """

    def __init__(self, root: str | Path, *, transform: Callable[[Any], Any] | None = None,
                 extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> None:
        pil_image_module()  # fail now, not at the first item, when Pillow is missing
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root} is not a folder; ImageFolder needs root/<class>/<image>")
        self.classes: list[str] = sorted(p.name for p in root.iterdir()
                                         if p.is_dir() and not p.name.startswith("."))
        suffixes = tuple(e.lower() for e in extensions)
        self.samples: list[tuple[Path, int]] = []
        empty = []
        for label, name in enumerate(self.classes):
            files = sorted(p for p in (root / name).rglob("*")
                           if p.is_file() and p.suffix.lower() in suffixes)
            empty += [] if files else [name]
            self.samples += [(p, label) for p in files]
        if not self.classes or empty:
            raise DatasetError(f"{root}: " + (f"no images ({', '.join(suffixes)}) in the class "
                               f"folders {', '.join(empty)}" if self.classes else
                               "no class sub-folders") + "; lay it out as root/<class>/<image>")
        self.targets: list[int] = [label for _, label in self.samples]
        self.transform = transform
        self.root = root

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        image = open_image(path)  # a DatasetError naming the file for a broken one
        return (image if self.transform is None else self.transform(image)), label

    def __repr__(self) -> str:
        return (f"ImageFolder(root={str(self.root)!r}, classes={len(self.classes)}, "
                f"size={len(self)}, transform={self.transform!r})")


class Digits(LabelledImages):
    """The 1,797 8x8 handwritten digits (UCI optdigits test set, as scikit-learn ships it).

    Bundled in ``resources/digits.npz``: the original 4x4-block counts 0..16 are stored as
    ``value * 255 // 16`` (integer division, so 16 -> 255, 8 -> 127). Train and test are a
    stratified split: each class is permuted with ``numpy.random.default_rng(seed)`` and its
    first ``round(test_fraction * n_class)`` images are the test set.

    Items are ``(transform(image), label)`` with ``image`` a uint8 (8, 8, 1) array.

    Args:
        train: the training part instead of the test part.
        transform: applied to each image.
        test_fraction: share of each class held out for testing, in [0, 1].
        seed: seed of the split; the same seed gives the same split.
    """

    def __init__(self, *, train: bool = True, transform: Callable[[np.ndarray], Any] | None = None,
                 test_fraction: float = 0.2, seed: int = 0) -> None:
        if not 0.0 <= test_fraction <= 1.0:
            raise DatasetError(f"test_fraction must be in [0, 1], got {test_fraction}")
        raw = resources.files("vitzoo.data").joinpath("resources/digits.npz").read_bytes()
        with np.load(io.BytesIO(raw)) as npz:
            images, labels = npz["images"], npz["labels"]
        rng = np.random.default_rng(seed)
        test_parts = []
        for digit in range(10):
            members = rng.permutation(np.flatnonzero(labels == digit))
            test_parts.append(members[:round(test_fraction * len(members))])
        is_test = np.zeros(len(labels), dtype=bool)
        is_test[np.concatenate(test_parts)] = True
        self.indices = np.flatnonzero(is_test != train)  # positions in the 1,797, ascending
        self.images = images[self.indices][..., None]  # (N, 8, 8, 1)
        self.targets: list[int] = labels[self.indices].astype(int).tolist()
        self.classes: list[str] = [str(d) for d in range(10)]
        self.transform = transform
        self.train = train

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.images[index]
        return (image if self.transform is None else self.transform(image)), self.targets[index]

    def __repr__(self) -> str:
        return f"Digits(train={self.train}, size={len(self)}, transform={self.transform!r})"
