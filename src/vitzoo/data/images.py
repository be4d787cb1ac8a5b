"""Opening image files from strangers: a pixel limit, and a :class:`DatasetError` naming the
file for anything that is not a readable image (never a PIL traceback, never a blocked read)."""

from __future__ import annotations

import stat
import warnings
from pathlib import Path
from typing import Any

from ..errors import DatasetError, MissingDependencyError

__all__ = ["MAX_IMAGE_PIXELS", "open_image"]

MAX_IMAGE_PIXELS = 89_478_485
"""The most pixels (width x height) an image file may declare: Pillow's own default limit
(``PIL.Image.MAX_IMAGE_PIXELS``, about 0.25 GiB of RGB), checked on the file's header before
anything is decoded, so a small file that declares a huge image (a decompression bomb) is
refused without allocating it. Raise it here (``vitzoo.data.images.MAX_IMAGE_PIXELS``) for
larger images; Pillow's own hard limit (twice ``PIL.Image.MAX_IMAGE_PIXELS``) still applies."""


def pil_image_module() -> Any:
    """``PIL.Image``, or :class:`MissingDependencyError` naming the extra that installs it."""
    try:
        from PIL import Image
    except ImportError as err:
        raise MissingDependencyError('reading image files needs Pillow: '
                                     'pip install "vitzoo[image]"') from err
    return Image


def _check_file(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise DatasetError(f"cannot read image {path}: {err.strerror or err}") from err
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise DatasetError(f"{path} is {kind}; pass an image file")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path} is empty (0 bytes), not an image")


def open_image(path: str | Path, max_pixels: int | None = None) -> Any:
    """An image file as an RGB ``PIL.Image.Image``, fully decoded (the file is closed).

    Args:
        path: the image (any format Pillow reads).
        max_pixels: the most pixels it may have; default :data:`MAX_IMAGE_PIXELS`.

    Raises:
        DatasetError: the path is missing, not a regular file (a directory, a FIFO: never
            opened) or empty, the image is larger than the limit, or the file is truncated,
            corrupt or not an image; the message names the file.
        MissingDependencyError: Pillow is not installed.
    """
    path = Path(path)
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    image_module = pil_image_module()
    _check_file(path)
    try:
        with warnings.catch_warnings():
            # vitzoo's own limit decides; Pillow's warning (or error) is not the message
            warnings.simplefilter("ignore", image_module.DecompressionBombWarning)
            with image_module.open(path) as image:
                width, height = image.size
                if width * height > limit:
                    raise DatasetError(
                        f"{path} is a {width}x{height} image ({width * height:,} pixels), over "
                        f"the limit of {limit:,} (vitzoo.data.images.MAX_IMAGE_PIXELS); a file "
                        "this large may be a decompression bomb: shrink it, or raise the limit")
                return image.convert("RGB")
    except DatasetError:
        raise
    except image_module.DecompressionBombError as err:  # Pillow's limit, twice its default
        raise DatasetError(f"{path} declares an image over the pixel limit ({err}); a file "
                           "this large may be a decompression bomb") from err
    except Exception as err:  # whatever a hostile file breaks in a decoder, the file is bad
        raise DatasetError(f"{path} is not a readable image ({type(err).__name__}: {err}); "
                           "it may be truncated or corrupt, or not an image at all") from err
