"""Arrays known by their shape and dtype whose data is read only when asked.

A Google ``.npz`` is converted one array at a time: :func:`vitzoo.io.open_npz` describes every
member by its ``.npy`` header and reads its data only when ``np.asarray`` asks, so the whole
conversion pipeline (:mod:`vitzoo.adapters.jax_npz`) learns the file's architecture, names and
output shapes without reading data, and then holds about one array at a time.

Pure: nothing here opens a file (the loader given to :class:`LazyArray` does).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np

__all__ = ["LazyArray"]


class LazyArray:
    """An array of a known ``shape`` and ``dtype``; ``load()`` (or ``np.asarray``) reads it.

    Supports what the canonical form of a Google file needs without data: ``shape``, ``ndim``,
    ``size``, ``dtype``, ``reshape`` (of a known total), rows of the leading axis (scanned
    blocks: the stacked array is read once and freed after its last row is read) and
    :meth:`map` (an element-wise step such as a dtype conversion, applied when loaded).
    Every load reads again: the caller keeps the result as long as it needs it.
    """

    __slots__ = ("_load", "dtype", "shape")

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype,
                 load: Callable[[], np.ndarray]) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self._load = load

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def load(self) -> np.ndarray:
        """The data, read now."""
        return self._load()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self._load()
        return data if dtype is None else data.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"LazyArray(shape={self.shape}, dtype={self.dtype})"

    def map(self, fn: Callable[[np.ndarray], np.ndarray], *,
            dtype: Any = None) -> LazyArray:
        """``fn`` applied when loaded; the shape stays, the dtype becomes ``dtype`` if given."""
        return LazyArray(self.shape, self.dtype if dtype is None else dtype,
                         lambda: fn(self._load()))

    def reshape(self, *shape: Any) -> LazyArray:
        """The same data in another shape (``-1`` allowed once), applied when loaded."""
        wanted = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], tuple) else shape
        known = math.prod(n for n in wanted if n != -1)
        new = tuple(self.size // max(known, 1) if n == -1 else n for n in wanted)
        if math.prod(new) != self.size:
            raise ValueError(f"cannot reshape an array of size {self.size} into shape {wanted}")
        return LazyArray(new, self.dtype, lambda: self._load().reshape(new))

    def __getitem__(self, index: int) -> LazyArray:
        if not isinstance(index, int | np.integer) or not self.shape:
            raise TypeError("a LazyArray gives rows of its leading axis only (an int index)")
        if not -self.shape[0] <= index < self.shape[0]:
            raise IndexError(f"row {index} of an array of {self.shape[0]} rows")
        return LazyArray(self.shape[1:], self.dtype, lambda: np.array(self._load()[index]))

    def __iter__(self) -> Iterator[LazyArray]:
        return iter(self.rows())

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d LazyArray")
        return self.shape[0]

    def rows(self) -> list[LazyArray]:
        """The rows of the leading axis, sharing one read of the whole array: it is kept until
        every row has been loaded once, then freed (a row loaded twice reads again)."""
        if not self.shape:
            raise TypeError("a 0-d LazyArray has no rows")
        shared: dict[str, Any] = {"data": None, "left": set(range(self.shape[0]))}

        def row(i: int) -> np.ndarray:
            data = shared["data"]
            if data is None:
                data = self._load()
                if len(shared["left"]) > 1 or i not in shared["left"]:
                    shared["data"] = data
            shared["left"].discard(i)
            if not shared["left"]:
                shared["data"] = None
            return np.array(data[i])  # a copy: the row outlives the stacked array

        return [LazyArray(self.shape[1:], self.dtype, partial(row, i))
                for i in range(self.shape[0])]
