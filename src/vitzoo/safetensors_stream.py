"""A streaming ``.safetensors`` writer: tensors are written as they are produced.

The format is an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
byte offsets; ``__metadata__`` -> str -> str), padded with spaces to 8 bytes, then the raw
little-endian data. The header must come first, so the data is streamed to a scratch file
and copied behind the header at the end: memory holds one tensor at a time.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

__all__ = ["write_safetensors"]

_DTYPES = {
    np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
    np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16",
    np.dtype("int8"): "I8", np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL",
}


def write_safetensors(path: str | Path, tensors: Iterable[tuple[str, np.ndarray]],
                      metadata: Mapping[str, str] | None = None) -> None:
    """Write ``(name, array)`` pairs to ``path`` (not atomically: wrap in ``atomic_path``)."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    with tempfile.TemporaryFile(dir=Path(path).parent) as scratch:
        for name, array in tensors:
            if name in header:
                raise ValueError(f"tensor {name!r} written twice")
            array = np.ascontiguousarray(array)
            dtype = _DTYPES.get(array.dtype.newbyteorder("<"))
            if dtype is None:
                raise ValueError(f"cannot store dtype {array.dtype} of {name!r} in safetensors")
            data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            scratch.write(data)
            header[name] = {"dtype": dtype, "shape": list(array.shape),
                            "data_offsets": [offset, offset + len(data)]}
            offset += len(data)
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
        encoded += b" " * (-len(encoded) % 8)
        scratch.seek(0)
        with open(path, "wb") as out:
            out.write(struct.pack("<Q", len(encoded)))
            out.write(encoded)
            shutil.copyfileobj(scratch, out, length=16 << 20)
