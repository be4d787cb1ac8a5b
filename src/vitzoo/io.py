"""Bytes <-> tensors: safetensors (with vitzoo's metadata, built in one place), weights-only
PyTorch pickles, Google's ``.npz`` archives and JSON side files, and the detection of a file's
format from its content.

Every reader refuses what it cannot read with a :class:`~vitzoo.errors.CheckpointError` that
names the file: a path that is not a regular file (a directory, FIFO, socket, device or symlink
loop) is refused before it is opened, so nothing blocks on it; sizes a file declares (an array's
shape, a header's length, a zip member's unpacked size) are compared with the file's own size or
a cap below before anything is allocated. The limits are the ``MAX_*`` constants here, listed in
docs/checkpoints.md ("What vitzoo reads, and how").

Nothing here builds a model or knows another library's key names (that is
:mod:`vitzoo.adapters`); fitting tensors into a model is :mod:`vitzoo.loading`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import mmap
import os
import pickle
import stat
import struct
import sys
import tokenize
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import torch
from safetensors import safe_open
from torch import nn

from . import _torchscript
from ._utils import atomic_path
from ._version import __version__
from .adapters.lazy import LazyArray
from .adapters.rename import contiguous
from .config import ViTConfig
from .errors import CheckpointError

__all__ = ["FORMAT_NAME", "MAX_ARCHIVE_MEMBERS", "MAX_JSON_BYTES", "MAX_JSON_DEPTH",
           "MAX_METADATA_CHARS", "MAX_NPZ_EXPANSION", "MAX_SAFETENSORS_HEADER", "detect_format",
           "load_state_dict", "open_npz", "parse_vitzoo_metadata", "read_json", "read_npz",
           "numpy_entries", "read_safetensors", "read_safetensors_metadata", "safetensors_header",
           "save_model",
           "save_state_dict",
           "vitzoo_metadata", "write_safetensors"]

FORMAT_NAME = "vitzoo"

# Training checkpoints keep the weights under one of these keys (timm, DeiT, EMA variants).
WRAPPER_KEYS = ("model", "state_dict", "model_ema", "state_dict_ema")
# Wrappers that DDP and torch.compile put in front of every key.
KEY_PREFIXES = ("module.", "_orig_mod.")

# -- limits (docs/checkpoints.md, "What vitzoo reads, and how") ---------------------------------
MAX_SAFETENSORS_HEADER = 100 << 20
"""The longest safetensors JSON header read, in bytes (safetensors' own limit; a ViT-g file's
header is about 200 kB)."""
MAX_ARCHIVE_MEMBERS = 100_000
"""More members than this in an ``.npz`` or PyTorch zip is no checkpoint (ViT-g has ~2,000)."""
MAX_NPZ_EXPANSION = 100
"""The members of a zip (``.npz``, PyTorch) may unpack to at most this many times the file's
size, plus 1 MiB: ``np.savez`` and ``torch.save`` store data uncompressed (1x), and compressed
weights shrink by about a tenth. More is a zip bomb."""
MAX_JSON_BYTES = 16 << 20
"""The largest JSON side file (``config.json`` ...) read; a ViT's is a few kB."""
MAX_METADATA_CHARS = 1 << 20
"""The longest vitzoo metadata value (``vitzoo_config``, ``pretrained_cfg``) parsed."""
MAX_JSON_DEPTH = 32
"""The deepest nesting of lists and objects accepted in a config (vitzoo's have depth 3)."""

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive
# a zip member's local header: signature, versions, flags, method, time, date, CRC-32, sizes,
# then the lengths of the name and the extra field that precede the member's data
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_PICKLE_PROTOCOL_2 = b"\x80"  # torch.save's legacy format and every pickle since protocol 2
_SLACK = 1 << 20


# -- files ----------------------------------------------------------------------------------------
def _kind_of(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO (named pipe)"),
             (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"))
    return next((name for test, name in kinds if test(mode)), "special file")


def _not_regular(path: Path, mode: int) -> CheckpointError:
    if stat.S_ISDIR(mode):
        return CheckpointError(
            f"checkpoint {str(path)!r} is a directory, not a file: name the weights file in it "
            "(vitzoo.load_model reads a hub directory with config.json as a whole)")
    return CheckpointError(
        f"checkpoint {str(path)!r} is a {_kind_of(mode)}, not a regular file; vitzoo reads "
        "weights from regular files only (copy the data into a file first)")


def _require_file(path: Path) -> int:
    """The size of the regular file ``path`` (symlinks followed), from ``os.stat`` alone: a
    directory, FIFO, socket, device or symlink loop is refused without being opened."""
    try:
        info = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise CheckpointError(f"checkpoint {str(path)!r} is a symbolic link loop; point "
                                  "the link at the weights file") from err
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a "
                                  "file") from err
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {err.strerror}") from err
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(path, info.st_mode)
    return info.st_size


def _open(path: Path) -> IO[bytes]:
    """``path`` opened for reading without blocking: were it swapped for a FIFO after
    :func:`_require_file`, ``O_NONBLOCK`` keeps the open from waiting for a writer, and the
    descriptor's own ``fstat`` refuses it."""
    _require_file(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as err:
        raise CheckpointError(f"cannot open checkpoint {str(path)!r}: {err.strerror}") from err
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_regular(path, mode)
    return os.fdopen(fd, "rb")


def _head(path: Path, size: int = 16) -> bytes:
    with _open(path) as f:
        return f.read(size)


# -- detection ------------------------------------------------------------------------------------
def _is_safetensors(head: bytes) -> bool:
    """An 8-byte little-endian header length of at least 2, then the JSON header's ``{``.
    A length past the file's end or over the cap still counts: reading it says so."""
    return len(head) > 8 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] >= 2


def _zip_problem(path: Path, err: Exception) -> CheckpointError:
    return CheckpointError(
        f"cannot read checkpoint {path}: it starts as a zip archive (a NumPy .npz or a PyTorch "
        f"file) but cannot be opened as one ({err}); it is truncated or damaged, download or "
        "save it again")


def _zip_names(path: Path) -> list[str]:
    try:
        with _open(path) as f, zipfile.ZipFile(f) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise _zip_problem(path, err) from err
    if not names:
        raise CheckpointError(f"checkpoint {path} is an empty zip archive: it holds no weights")
    return names


def _zip_kind(path: Path) -> str:
    """``"torchscript"`` (``torch.jit.save``), ``"torch"`` (``torch.save``) or ``"npz"`` for
    a zip, from its members: a PyTorch zip has one top folder with ``data.pkl`` (and
    TorchScript a ``constants.pkl`` beside it); an ``.npz`` holds ``.npy`` members only."""
    names = _zip_names(path)
    pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1
               and n.rpartition("/")[2] == "data.pkl"]
    if pickles:
        root = pickles[0][: -len("data.pkl")]
        return "torchscript" if f"{root}constants.pkl" in names else "torch"
    if all(n.endswith(".npy") for n in names):
        return "npz"
    odd = next(n for n in names if not n.endswith(".npy"))
    raise CheckpointError(
        f"cannot read checkpoint {path}: it is a zip archive but neither a NumPy .npz (its "
        f"member {odd!r} is not a .npy array) nor a PyTorch file (it has no data.pkl); check "
        "that the path names a weights file")


def detect_format(path: str | Path) -> str:
    """What a checkpoint is, from its content, never its suffix: ``"hub_dir"`` (a
    directory), ``"jax_npz"``, ``"vitzoo"`` (safetensors with vitzoo's config),
    ``"safetensors"`` or ``"pickle"`` (PyTorch, TorchScript archives included; plain state
    dicts need an architecture).

    Raises:
        CheckpointError: the path does not exist, is not a regular file (a FIFO, device,
            socket or symlink loop), is empty, or its bytes are none of these.
    """
    path = Path(path)
    if path.is_dir():
        return "hub_dir"
    if _require_file(path) == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: it is empty (0 bytes), the download "
                              "or save did not finish; fetch or save it again")
    head = _head(path)
    if head.startswith(_ZIP_MAGICS):
        return "jax_npz" if _zip_kind(path) == "npz" else "pickle"
    if _is_safetensors(head):
        metadata = read_safetensors_metadata(path)
        return FORMAT_NAME if metadata.get("format") == FORMAT_NAME else "safetensors"
    if head.startswith(_PICKLE_PROTOCOL_2):
        return "pickle"
    raise CheckpointError(
        f"cannot read checkpoint {path}: it is not a safetensors file, a PyTorch checkpoint "
        "or a NumPy .npz archive (its first bytes are "
        f"{head[:8]!r}); check that the path names a weights file and that it is complete"
    )


# -- safetensors ----------------------------------------------------------------------------------
# bytes per element of the dtypes safetensors names (sub-byte float4/6 types are not read)
_ST_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
                "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "C64": 8, "F64": 8,
                "I64": 8, "U64": 8}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def _decode_json(data: bytes | str) -> Any:
    """JSON with duplicate keys refused (``ValueError``) and deep nesting a ``ValueError``
    too (the parser's ``RecursionError``)."""
    try:
        return json.loads(data, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None


def _read_header(f: IO[bytes], size: int, path: Path) -> dict[str, Any]:
    """The JSON header of the safetensors file open as ``f`` (``size`` bytes), checked."""
    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"cannot read {path} as safetensors: {why}; the file is damaged, "
                               "truncated or not safetensors, download or save it again")

    if size < 8:
        raise bad(f"it has {size} bytes, fewer than the 8 of the header length")
    (length,) = struct.unpack("<Q", f.read(8))
    if length > MAX_SAFETENSORS_HEADER:
        raise bad(f"it declares a {length}-byte header, over the {MAX_SAFETENSORS_HEADER}-byte "
                  "cap")
    if 8 + length > size:
        raise bad(f"it declares a {length}-byte header but holds {size - 8} bytes after the "
                  "length")
    try:
        header = _decode_json(f.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise bad(f"its header is not UTF-8 JSON ({err})") from err
    if not isinstance(header, dict):
        raise bad(f"its header is a JSON {type(header).__name__}, not an object")
    metadata = header.get("__metadata__")
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(v, str) for v in metadata.values())):
        raise bad("its __metadata__ is not an object of strings")
    _check_entries(header, size - 8 - length, bad)
    return header


def _check_entries(header: Mapping[str, Any], data_size: int, bad: Any) -> None:
    """Every tensor entry has a known dtype, a shape of non-negative integers and offsets whose
    span is the shape's byte size; together the spans tile the data exactly, in order."""
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {name!r} is not described by dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _ST_ITEMSIZE:
            raise bad(f"tensor {name!r} has the dtype {dtype!r}, which vitzoo does not read "
                      f"(it reads {', '.join(_ST_ITEMSIZE)})")
        if not (isinstance(shape, list) and isinstance(offsets, list) and len(offsets) == 2
                and all(type(v) is int and v >= 0 for v in (*shape, *offsets))):
            raise bad(f"tensor {name!r} has the shape {shape!r} and offsets {offsets!r}, not "
                      "lists of non-negative integers")
        begin, end = offsets
        if end > data_size or begin > end:
            raise bad(f"tensor {name!r} spans bytes {begin}..{end} of a {data_size}-byte data "
                      "section")
        if math.prod(shape) * _ST_ITEMSIZE[dtype] != end - begin:
            raise bad(f"tensor {name!r} of shape {tuple(shape)} and dtype {dtype} needs "
                      f"{math.prod(shape) * _ST_ITEMSIZE[dtype]} bytes, but its offsets span "
                      f"{end - begin}")
        spans.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise bad(f"tensor {name!r} starts at byte {begin} of the data, not at {position} "
                      "(tensors overlap or leave gaps)")
        position = end
    if position != data_size:
        raise bad(f"the tensors cover {position} of the {data_size} bytes of data")


def _safetensors_header(path: Path) -> dict[str, Any]:
    size = _require_file(path)
    with _open(path) as f:
        return _read_header(f, size, path)


@contextlib.contextmanager
def _opened_safetensors(path: Path) -> Iterator[Any]:
    """``safe_open`` (after vitzoo's own check of the header) whose every failure, opening or
    reading, is a :class:`CheckpointError` naming the file."""
    _safetensors_header(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            yield f
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - the reader's errors (SafetensorError) mean a bad file
        raise CheckpointError(
            f"cannot read {path}: {err} (is it a complete .safetensors file?)"
        ) from err


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, reading only its header.

    Raises:
        CheckpointError: missing, not a regular file, or its header is malformed (see
            :func:`read_safetensors`).
    """
    return dict(_safetensors_header(Path(path)).get("__metadata__") or {})


_TORCH_DTYPES = {"BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8,
                 "F8_E5M2": torch.float8_e5m2, "F8_E4M3": torch.float8_e4m3fn,
                 "I16": torch.int16, "U16": torch.uint16, "F16": torch.float16,
                 "BF16": torch.bfloat16, "I32": torch.int32, "U32": torch.uint32,
                 "F32": torch.float32, "C64": torch.complex64, "F64": torch.float64,
                 "I64": torch.int64, "U64": torch.uint64}


def _mapped_safetensors(path: Path) -> tuple[mmap.mmap, int, dict[str, Any]]:
    """``(map, start of the data, header)``: the header read and checked from the descriptor
    that is then mapped, privately (copy-on-write: writing to a tensor never changes the
    file), so what was checked is what is mapped."""
    size = _require_file(path)
    with _open(path) as f:
        header = _read_header(f, size, path)
        start = f.tell()
        try:
            if os.fstat(f.fileno()).st_size != size:
                raise OSError(errno.EIO, "the file changed while it was read")
            mapped = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
        except (OSError, ValueError) as err:
            raise CheckpointError(f"cannot read {path}: {err} (is it a complete .safetensors "
                                  "file?)") from err
    return mapped, start, header


def _mapped_tensor(mapped: mmap.mmap, start: int, entry: Mapping[str, Any]) -> torch.Tensor:
    """One tensor over the map, without a copy (pages are read when touched); its own storage,
    so saving it saves its bytes only. A tensor whose offset is not a multiple of its element
    size (possible after odd-sized ones) is copied once, aligned."""
    dtype, shape = _TORCH_DTYPES[entry["dtype"]], entry["shape"]
    begin, end = entry["data_offsets"]
    if end == begin:
        return torch.empty(shape, dtype=dtype)
    offset = start + begin
    if offset % _ST_ITEMSIZE[entry["dtype"]]:
        raw = torch.frombuffer(mapped, dtype=torch.uint8, count=end - begin, offset=offset)
        return raw.clone().view(dtype).reshape(shape)
    count = (end - begin) // _ST_ITEMSIZE[entry["dtype"]]
    return torch.frombuffer(mapped, dtype=dtype, count=count, offset=offset).reshape(shape)


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a ``.safetensors`` file, memory-mapped.

    The header is checked before any tensor is made: its length (at most
    :data:`MAX_SAFETENSORS_HEADER` and within the file), UTF-8 JSON without duplicate keys, an
    object of entries with known dtypes, shapes and offsets that match each other and tile the
    data exactly. The tensors are views of a private (copy-on-write) map of the file, not
    copies: nothing is read until a tensor is used, and a model that takes them as its
    parameters (``load_state_dict(assign=True)``) holds the weights once. (Like every reader
    that maps a file, a process that truncates the file in place while its tensors live
    makes them unreadable; vitzoo's own writes replace files by renaming, which does not.)

    Raises:
        CheckpointError: missing, truncated, malformed, not safetensors, or a tensor vitzoo does
            not load (complex).
    """
    path = Path(path)
    if sys.byteorder != "little":  # the data is little-endian: let safetensors swap it
        return _read_safetensors_swapped(path)
    mapped, start, header = _mapped_safetensors(path)
    tensors = {k: _mapped_tensor(mapped, start, v) for k, v in header.items()
               if k != "__metadata__"}
    for key, value in tensors.items():
        _check_tensor(path, key, value)
    return tensors, dict(header.get("__metadata__") or {})


def _read_safetensors_swapped(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """:func:`read_safetensors` on a big-endian machine: ``safe_open``'s copies."""
    with _opened_safetensors(path) as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        metadata = dict(f.metadata() or {})
    for key, value in tensors.items():
        _check_tensor(path, key, value)
    return tensors, metadata


# -- PyTorch pickles ------------------------------------------------------------------------------
def _check_zip_members(archive: zipfile.ZipFile, size: int, path: Path) -> list[zipfile.ZipInfo]:
    """The members of a zip checkpoint, refused when there are too many, when one is
    encrypted, compressed in a way other than stored / deflated, named twice, or when they
    would unpack to more than :data:`MAX_NPZ_EXPANSION` times the file (a zip bomb)."""
    infos = archive.infolist()
    if len(infos) > MAX_ARCHIVE_MEMBERS:
        raise CheckpointError(f"{path} has {len(infos)} zip members, more than the "
                              f"{MAX_ARCHIVE_MEMBERS} a checkpoint may have")
    seen: set[str] = set()
    for info in infos:
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{path}: zip member {info.filename!r} is encrypted; vitzoo "
                                  "reads unencrypted archives only")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"{path}: zip member {info.filename!r} uses compression "
                                  f"method {info.compress_type}; vitzoo reads stored or "
                                  "deflated members (what NumPy and PyTorch write)")
        if info.filename in seen:
            raise CheckpointError(f"{path}: the zip member {info.filename!r} appears twice; "
                                  "the archive is damaged or forged")
        seen.add(info.filename)
    unpacked = sum(i.file_size for i in infos)
    if unpacked > size * MAX_NPZ_EXPANSION + _SLACK:
        raise CheckpointError(
            f"{path} is a {size}-byte zip whose members claim {unpacked} bytes unpacked, more "
            f"than {MAX_NPZ_EXPANSION} times the file (a zip bomb, or a damaged directory); "
            "it was not unpacked")
    return infos


def _check_crcs(path: Path) -> None:
    """Every member of a PyTorch zip read once against its CRC-32 (``torch.load`` does not
    check them, so a flipped bit in the weights would load), without holding more than 1 MiB."""
    size = _require_file(path)
    try:
        with _open(path) as f, zipfile.ZipFile(f) as archive:
            for info in _check_zip_members(archive, size, path):
                with archive.open(info) as member:
                    while member.read(_SLACK):
                        pass
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"cannot read checkpoint {path}: {err}. The zip archive is "
                              "damaged or truncated; download or save it again") from err


def _torch_load(path: Path) -> object:
    try:
        # An open file, not the path: torch.load treats some suffixes specially.
        with _open(path) as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, RuntimeError) as err:
        # torch names the blocked callable ("GLOBAL posix.system"); anything else is damage.
        # Its advice to retry with weights_only=False is never repeated: that runs code.
        if isinstance(err, pickle.UnpicklingError) and "GLOBAL" in str(err):
            raise CheckpointError(
                f"{path} was refused: it needs more than tensors to unpickle (arbitrary code); "
                "vitzoo only reads weights_only pickles. Re-save it with "
                "torch.save(model.state_dict(), path) or convert it to safetensors"
            ) from err
        raise CheckpointError(f"cannot read checkpoint {path}: it is a damaged or truncated "
                              "PyTorch file; download or save it again") from err
    except Exception as err:  # noqa: BLE001 - any reader failure means a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err


def _read_pickle(path: Path) -> object:
    """A PyTorch pickle (``weights_only=True``), or the parameters and buffers of a
    TorchScript archive, read as data (which ``torch.load`` would hand to ``torch.jit.load``).
    A zip's members are checked first (sizes, CRC-32)."""
    if _head(path, 4).startswith(_ZIP_MAGICS):
        kind = _zip_kind(path)
        if kind == "npz":
            raise CheckpointError(f"{path} is a NumPy .npz archive, not a PyTorch file")
        _check_crcs(path)
        if kind == "torchscript":
            return _torchscript.read_archive(path)
    return _torch_load(path)


def _check_tensor(path: Path, key: str, value: torch.Tensor) -> None:
    """Refuse a tensor no ViT weight can be: sparse, nested, meta (no data), quantized,
    complex, or a view that claims more elements than its storage holds (a stride-0
    ``expand``, which would allocate its full size the first time it is copied)."""
    what = ""
    if value.is_nested or value.layout != torch.strided:
        what = f"a {value.layout} (sparse or nested) tensor; save it with .to_dense()"
    elif value.is_meta:
        what = "a meta tensor, without data (saved from a model built on the meta device)"
    elif value.is_quantized:
        what = f"quantized ({value.dtype}); save it with .dequantize()"
    elif value.is_complex():
        what = f"complex ({value.dtype}); ViT weights are real"
    elif value.numel() * value.element_size() > value.untyped_storage().nbytes():
        what = (f"a view of {value.numel()} elements on a storage of "
                f"{value.untyped_storage().nbytes()} bytes (an expanded tensor); save it with "
                ".clone()")
    if what:
        raise CheckpointError(f"{path}: {key!r} is {what}. vitzoo loads dense real tensors")


def _as_state_dict(data: object, path: Path) -> dict[str, torch.Tensor]:
    """A file's content as a state dict: unwrapped, prefixes stripped, every key a string,
    every value a loadable tensor, no two keys the same once stripped."""
    if isinstance(data, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path} does not hold a state dict of tensors: it holds a "
                              f"{type(data).__name__}, not a dict of names to tensors")
    state: dict[str, torch.Tensor] = {}
    origins: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path} does not hold a state dict of tensors: its key "
                                  f"{key!r} ({type(key).__name__}) is not a string")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path} does not hold a state dict of tensors: {key!r} is a "
                                  f"{type(value).__name__}, not a tensor")
        _check_tensor(path, key, value)
        name = strip_prefixes(key)
        if name in origins:
            raise CheckpointError(
                f"{path} holds both {origins[name]!r} and {key!r}, which are the same key "
                f"{name!r} once the DDP / torch.compile prefixes are removed; keep one of them")
        origins[name], state[name] = key, value
    return state


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a safetensors file, a PyTorch pickle (``weights_only=True``) or
    a TorchScript archive (OpenAI's CLIP files; its code is never run), telling them apart by
    their content.

    Training wrappers (``model``, ``state_dict``, ``model_ema``, ``state_dict_ema``) and the
    ``module.`` / ``_orig_mod.`` key prefixes are removed.

    Raises:
        CheckpointError: the file is missing, not a regular file, unreadable, refused, not a
            state dict (non-string keys, non-tensor values, two keys the same once stripped)
            or holds tensors vitzoo does not load (sparse, meta, quantized, complex).
    """
    path = Path(path)
    _require_file(path)
    fmt = detect_format(path)
    if fmt == "jax_npz":
        raise CheckpointError(
            f"{path} is a Google JAX .npz: use vitzoo.load_model(path), which reads the "
            "architecture and numerics from it, or convert it with `vitzoo convert`"
        )
    data = read_safetensors(path)[0] if fmt in ("safetensors", FORMAT_NAME) else _read_pickle(path)
    return _as_state_dict(data, path)


def strip_prefixes(key: str) -> str:
    """``module._orig_mod.blocks.0...`` -> ``blocks.0...`` (DDP and torch.compile wrappers)."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in KEY_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


# -- NumPy archives -------------------------------------------------------------------------------
def _npy_dtype_problem(dtype: np.dtype) -> str | None:
    """Why an ``.npy`` member's dtype is not read (None: it is)."""
    if dtype.hasobject:
        return "holds Python objects (a pickle), which vitzoo never loads"
    if dtype.fields is not None or dtype.subdtype is not None:
        return f"has the structured dtype {dtype}, not a plain numeric one"
    if dtype.kind in "biu" or (dtype.kind == "f" and dtype.itemsize <= 8):
        return None
    if dtype.kind == "V" and dtype.itemsize == 2:
        return None  # bfloat16, as np.savez writes it
    return (f"has the dtype {dtype}; vitzoo reads bool, integer, float16/32/64 and bfloat16 "
            "(V2) arrays")


def _npy_header(f: IO[bytes], info: zipfile.ZipInfo, path: Path
                ) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran order, dtype)`` of the ``.npy`` member open as ``f`` (positioned at its
    start; left at its data), checked: a format numpy writes, a dtype vitzoo reads, and a
    shape whose byte size is what the member holds (so a forged header allocates nothing)."""
    member = info.filename
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise CheckpointError(f"{path}: member {member!r} is an .npy file of format "
                              f"{version}; vitzoo reads formats 1.0 and 2.0")
    problem = _npy_dtype_problem(dtype)
    if problem:
        raise CheckpointError(f"{path}: array {member!r} {problem}")
    nbytes = math.prod(shape) * dtype.itemsize
    held = info.file_size - f.tell()
    if nbytes != held:
        raise CheckpointError(
            f"{path}: array {member!r} declares shape {shape} of {dtype} ({nbytes} bytes) "
            f"but its member holds {held} bytes; the file is damaged or forged, and nothing "
            "was allocated for it")
    return tuple(shape), bool(fortran), dtype


def _read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> np.ndarray:
    """One ``.npy`` member: its header first (:func:`_npy_header`), then exactly the bytes it
    declares, read into one buffer, and the member's CRC-32 checked. A stored member (what
    ``np.savez`` writes) is read straight from the archive's file into that buffer."""
    with archive.open(info) as f:
        shape, fortran, dtype = _npy_header(f, info, path)
        nbytes = math.prod(shape) * dtype.itemsize
        data = np.empty(nbytes, np.uint8)  # (not zero-filled: every byte is read into it)
        if info.compress_type == zipfile.ZIP_STORED and archive.fp is not None:
            # (typed IO[bytes]: the archive's file is the one _open returned, a BufferedReader,
            # and a member opened for reading is a ZipExtFile; both are BufferedIOBase)
            _read_stored(cast(io.BufferedIOBase, archive.fp), info, f.tell(), data.data, path)
        else:
            _read_member(cast(io.BufferedIOBase, f), data.data, info, path)
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def _read_member(f: io.BufferedIOBase, view: memoryview, info: zipfile.ZipInfo, path: Path) -> None:
    """The rest of a (deflated) member into ``view``; zipfile checks the CRC-32 at the end."""
    done = 0
    # in pieces: a zip member's readinto reads into a temporary bytes object first
    while done < len(view) and (count := f.readinto(view[done:done + (16 << 20)])):
        done += count
    if done != len(view) or f.read(1):  # reading to the end checks the CRC-32
        raise CheckpointError(f"{path}: array {info.filename!r} is truncated")


def _read_stored(fp: io.BufferedIOBase, info: zipfile.ZipInfo, skip: int, view: memoryview,
                 path: Path) -> None:
    """The data of a stored member after its first ``skip`` bytes (the ``.npy`` header), read
    from the archive's file into ``view`` without intermediate copies; the CRC-32 of the whole
    member (header and data) must be the one the archive records."""
    fp.seek(info.header_offset)
    local = fp.read(_LOCAL_HEADER.size)
    if len(local) != _LOCAL_HEADER.size or local[:4] != _ZIP_MAGICS[0]:
        raise _npz_problem(path, zipfile.BadZipFile(f"member {info.filename!r} has no valid "
                                                    "local header"))
    *_, name_length, extra_length = _LOCAL_HEADER.unpack(local)
    fp.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
    crc = zlib.crc32(fp.read(skip))
    done = 0
    while done < len(view) and (count := fp.readinto(view[done:done + (64 << 20)])):
        crc = zlib.crc32(view[done:done + count], crc)
        done += count
    if done != len(view):
        raise CheckpointError(f"{path}: array {info.filename!r} is truncated")
    if crc != info.CRC:
        raise _npz_problem(path, zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}"))


def _npz_problem(path: Path, err: Exception) -> CheckpointError:
    # (numpy parses an .npy header with tokenize and ast: a forged one fails there)
    return CheckpointError(
        f"cannot read {path} as an .npz archive: {err}. The file is truncated, corrupt or "
        "not a NumPy archive; download it again")


_NPZ_ERRORS = (zipfile.BadZipFile, EOFError, OSError, ValueError, TypeError, RecursionError,
               SyntaxError, tokenize.TokenError, NotImplementedError, zlib.error)


def _npz_members(archive: zipfile.ZipFile, size: int, path: Path) -> list[zipfile.ZipInfo]:
    infos = _check_zip_members(archive, size, path)
    odd = [i.filename for i in infos if not i.filename.endswith(".npy")]
    if odd:
        raise CheckpointError(
            f"{path} is not a NumPy .npz archive: its member {odd[0]!r} is not a .npy "
            "array (a PyTorch file is a zip too: load it with vitzoo.load_checkpoint)")
    if not infos:
        raise CheckpointError(f"{path} holds no arrays")
    return infos


def _lazy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> LazyArray:
    """A member described by its checked header; its data is read (and checked) when loaded."""
    with archive.open(info) as f:
        shape, _, dtype = _npy_header(f, info, path)

    def load() -> np.ndarray:
        try:
            return _read_npy(archive, info, path)
        except CheckpointError:
            raise
        except _NPZ_ERRORS as err:
            raise _npz_problem(path, err) from err

    return LazyArray(shape, dtype if dtype.isnative else dtype.newbyteorder("="), load)


@contextlib.contextmanager
def open_npz(path: str | Path) -> Iterator[dict[str, LazyArray]]:
    """Every array of an ``.npz`` file as a :class:`~vitzoo.adapters.lazy.LazyArray`, keyed by
    member name without ``.npy``: the archive's members and every ``.npy`` header are checked
    as :func:`read_npz` checks them, but no data is read until an array is loaded (each load
    reads the member again, its CRC-32 checked), so a converter holds one array at a time.
    The arrays can be loaded while the block runs.

    Raises:
        CheckpointError: as :func:`read_npz`, for the headers here and for the data on load.
    """
    path = Path(path)
    size = _require_file(path)
    if not _head(path, 4).startswith(_ZIP_MAGICS):
        raise CheckpointError(f"{path} is not a NumPy .npz archive (not a zip file); "
                              "vitzoo.load_model tells the formats apart by their content")
    with contextlib.ExitStack() as stack:
        try:
            archive = stack.enter_context(zipfile.ZipFile(stack.enter_context(_open(path))))
            arrays = {i.filename[:-len(".npy")]: _lazy_member(archive, i, path)
                      for i in _npz_members(archive, size, path)}
        except CheckpointError:
            raise
        except _NPZ_ERRORS as err:
            raise _npz_problem(path, err) from err
        yield arrays


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, keyed by member name without ``.npy`` (no pickles).

    The archive's members are checked before any is unpacked (``.npy`` only, unencrypted,
    stored or deflated, at most :data:`MAX_ARCHIVE_MEMBERS`, unpacking to at most
    :data:`MAX_NPZ_EXPANSION` times the file), and each array's header before its data: the
    declared shape's byte size must be what the member holds (so a header that claims a huge
    shape allocates nothing). Arrays of every rank and size are returned (0-d and empty ones
    too) in bool, integer, float16/32/64 or bfloat16 (``V2``), in native byte order; NaN and
    infinity are left to the caller. :func:`open_npz` reads them one at a time.

    Raises:
        CheckpointError: missing, not a regular file, truncated, corrupt (CRC-32), empty, or a
            member or dtype vitzoo does not read.
    """
    with open_npz(path) as arrays:
        return {name: array.load() for name, array in arrays.items()}


# -- JSON -----------------------------------------------------------------------------------------
def _depth(value: object) -> int:
    """The nesting depth of parsed JSON (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level + 1)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict)
                                                  else item))
    return deepest


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from a side file (``config.json``, ``preprocessor_config.json``): UTF-8,
    at most :data:`MAX_JSON_BYTES`, no key twice, nested at most :data:`MAX_JSON_DEPTH` deep.

    Raises:
        CheckpointError: missing, not a regular file, too large, not JSON, or not an object.
    """
    path = Path(path)
    size = _require_file(path)
    if size > MAX_JSON_BYTES:
        raise CheckpointError(f"{path} is {size} bytes, over the {MAX_JSON_BYTES}-byte cap of a "
                              "JSON config file; check that the path names a config")
    with _open(path) as f:
        raw = f.read(MAX_JSON_BYTES + 1)
    try:
        data = _decode_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path} is not valid UTF-8 JSON: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a JSON {type(data).__name__}, not an object")
    if _depth(data) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{path} is nested more than {MAX_JSON_DEPTH} levels deep; it is "
                              "not a model config")
    return data


# -- vitzoo's metadata ----------------------------------------------------------------------------
def vitzoo_metadata(cfg: ViTConfig, pretrained_cfg: Mapping[str, Any] | None = None,
                    extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The safetensors metadata of a self-describing vitzoo file: the format marker, the
    writing version, the full config (``vitzoo_config``), the pretrained cfg and ``extra``
    provenance (``source_format``, ``source_layout`` ...)."""
    metadata = {str(k): str(v) for k, v in (extra or {}).items()}
    metadata.update({
        "format": FORMAT_NAME,
        "vitzoo_version": __version__,
        "vitzoo_config": cfg.to_json(),
        "pretrained_cfg": json.dumps(dict(pretrained_cfg or {}), default=list, sort_keys=True),
    })
    return metadata


def _metadata_object(metadata: Mapping[str, Any], key: str, name: str) -> dict[str, Any] | None:
    """The JSON object stored as text under ``key`` (None: absent or JSON ``null``)."""
    raw = metadata.get(key)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise CheckpointError(f"{name}: its {key} metadata is a {type(raw).__name__}, not JSON "
                              "text; re-save the file with vitzoo.save_model")
    if len(raw) > MAX_METADATA_CHARS:
        raise CheckpointError(f"{name}: its {key} metadata has {len(raw)} characters, over the "
                              f"{MAX_METADATA_CHARS} a config may have")
    try:
        value = _decode_json(raw)
    except ValueError as err:
        raise CheckpointError(f"{name}: its {key} metadata is not valid JSON ({err}); re-save "
                              "the file with vitzoo.save_model") from err
    if value is not None and not isinstance(value, dict):
        raise CheckpointError(f"{name}: its {key} metadata is a JSON {type(value).__name__}, "
                              "not an object")
    if value is not None and _depth(value) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{name}: its {key} metadata is nested more than "
                              f"{MAX_JSON_DEPTH} levels deep; it is not a vitzoo config")
    return value


def parse_vitzoo_metadata(metadata: Mapping[str, str], name: str
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config fields, pretrained cfg)`` from :func:`vitzoo_metadata`'s output.

    Both are JSON objects as text, of at most :data:`MAX_METADATA_CHARS` characters and
    :data:`MAX_JSON_DEPTH` levels; a missing or ``null`` ``pretrained_cfg`` is ``{}``. The
    fields themselves are checked by :meth:`ViTConfig.from_dict`.

    Raises:
        CheckpointError: the config is missing or ``null``, or either is not a JSON object.
    """
    if not isinstance(metadata, Mapping):
        raise CheckpointError(f"{name}: its metadata is a {type(metadata).__name__}, not a "
                              "mapping of strings")
    config = _metadata_object(metadata, "vitzoo_config", name)
    if config is None:
        raise CheckpointError(
            f"{name} has no readable vitzoo_config metadata: it is not a self-describing vitzoo "
            "file. Load it into a built model with vitzoo.load_checkpoint, or name its "
            "architecture")
    return config, _metadata_object(metadata, "pretrained_cfg", name) or {}


# -- writing --------------------------------------------------------------------------------------
_DTYPES = {
    np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
    np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16",
    np.dtype("int8"): "I8", np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL",
}


Entry = tuple[str, np.dtype, tuple[int, ...]]
"""One tensor of a safetensors file as its header lists it: name, dtype, shape."""


def _st_dtype(name: str, dtype: np.dtype) -> str:
    found = _DTYPES.get(np.dtype(dtype).newbyteorder("<"))
    if found is None:
        raise ValueError(f"cannot store dtype {dtype} of {name!r} in safetensors")
    return found


def safetensors_header(entries: Iterable[Entry], metadata: Mapping[str, str] | None = None
                       ) -> bytes:
    """The 8-byte length and the JSON header (``__metadata__`` first, then every tensor in
    order with its dtype, shape and byte offsets) padded with spaces to 8 bytes: everything a
    safetensors file holds before its data, made from names, dtypes and shapes alone."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, dtype, shape in entries:
        if name in header:
            raise ValueError(f"tensor {name!r} written twice")
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        header[name] = {"dtype": _st_dtype(name, dtype), "shape": [int(n) for n in shape],
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded


def _write_array(out: IO[bytes], array: np.ndarray) -> None:
    """``array``'s bytes in C order, little-endian, written from one contiguous buffer: no copy
    of an array that already is one (a transposed view is copied once, here)."""
    array = contiguous(np.asarray(array))
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    out.write(array.reshape(-1).view(np.uint8).data)


def write_safetensors(path: str | Path,
                      tensors: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
                      metadata: Mapping[str, str] | None = None, *,
                      entries: Iterable[Entry] | None = None) -> None:
    """Write arrays to ``path`` as safetensors in one pass (not atomically: wrap in
    ``atomic_path``).

    The format is an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
    byte offsets; ``__metadata__`` -> str -> str) padded with spaces to 8 bytes, then the raw
    little-endian data. The header comes first and is made from ``entries`` (names, dtypes,
    shapes: known before any data for a converted file) or from a mapping's arrays, so each
    array is written once, into its final place, as it is produced: a stream of ``(name,
    array)`` pairs with ``entries`` holds one array at a time.

    Raises:
        ValueError: a dtype safetensors cannot store, a name twice, or a produced array that
            is not the one ``entries`` announced (name, dtype or shape).
    """
    if entries is None:
        tensors = tensors if isinstance(tensors, Mapping) else dict(tensors)
        entries = [(k, v.dtype, v.shape) for k, v in tensors.items()]
    entries = list(entries)
    pairs = tensors.items() if isinstance(tensors, Mapping) else tensors
    # the writing (and a transposed array's one copy) runs in a thread while the next array
    # is produced: one array waits at most, and the order is the header's
    with open(path, "wb") as out, ThreadPoolExecutor(1, thread_name_prefix="vitzoo-write") as pool:
        out.write(safetensors_header(entries, metadata))
        count, writing = 0, None
        for name, array in pairs:
            if count == len(entries):  # (zip would drop the extra one silently)
                raise ValueError(f"tensor {name!r} is beyond the {len(entries)} announced")
            want, dtype, shape = entries[count]
            if (name, np.dtype(array.dtype).newbyteorder("<"), tuple(array.shape)) != (
                    want, np.dtype(dtype).newbyteorder("<"), tuple(shape)):
                raise ValueError(f"tensor {name!r} {array.dtype} {tuple(array.shape)} is not "
                                 f"the announced {want!r} {dtype} {tuple(shape)}")
            if writing is not None:
                writing.result()
            writing = pool.submit(_write_array, out, array)
            count += 1
        if writing is not None:
            writing.result()
        if count != len(entries):
            raise ValueError(f"{count} tensors written of the {len(entries)} announced")


def _numpy_items(state: Mapping[str, torch.Tensor]) -> Iterator[tuple[str, np.ndarray]]:
    for key, value in state.items():
        yield key, value.detach().cpu().contiguous().numpy()


def numpy_entries(state: Mapping[str, torch.Tensor]) -> list[Entry]:
    """The safetensors header entries of a state dict, from its tensors' dtypes and shapes
    (no data is read)."""
    return [(k, torch.empty((), dtype=v.dtype).numpy().dtype, tuple(v.shape))
            for k, v in state.items()]


def save_state_dict(state: Mapping[str, torch.Tensor], path: str | Path,
                    metadata: Mapping[str, str] | None = None) -> Path:
    """Write a state dict as ``.safetensors`` atomically (no config: see :func:`save_model`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        write_safetensors(tmp, _numpy_items(state), dict(metadata or {}),
                          entries=numpy_entries(state))
    return path


def save_model(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` as one self-describing ``.safetensors`` file (atomically).

    The metadata holds the full config (``vitzoo_config``) and ``pretrained_cfg``, so
    :func:`vitzoo.load_model` rebuilds the exact architecture.
    """
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, ViTConfig):
        raise CheckpointError(f"{type(model).__name__} has no vitzoo config to save")
    metadata = vitzoo_metadata(cfg, getattr(model, "pretrained_cfg", None))
    return save_state_dict(model.state_dict(), path, metadata)
