"""TorchScript archives (``torch.jit.save``, the form of OpenAI's CLIP releases) read as data.

An archive is a zip with one top folder: ``data.pkl`` pickles the module tree (objects of
``__torch__.*`` classes whose states are dicts of attributes), ``data/<key>`` holds the raw
storages, ``code/`` the TorchScript source of every class (which declares its
``__parameters__`` and ``__buffers__``) and ``constants.pkl`` the traced constants.

``torch.load(weights_only=True)`` refuses these archives (torch 2.13: "Cannot use
weights_only=True with TorchScript archives"), and ``torch.jit.load`` compiles and runs the
code in them. Here ``data.pkl`` is unpickled by an unpickler that allows only tensor
rebuilding and records each ``__torch__`` object's state without importing or calling
anything; the parameters and buffers are then collected by attribute path, as
``ScriptModule.state_dict()`` names them. The code is only searched for the declarations.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import re
import stat
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

__all__ = ["MAX_MEMBERS", "MAX_PICKLE_BYTES", "is_archive", "read_archive"]

MAX_MEMBERS = 100_000
"""More members than this is no checkpoint (a ViT-g archive has about 2,000)."""
MAX_PICKLE_BYTES = 64 << 20
"""The largest ``data.pkl`` or code file read (they hold names and shapes, not weights)."""

_STORAGE_DTYPES = {
    "HalfStorage": torch.float16, "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64, "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64, "IntStorage": torch.int32, "ShortStorage": torch.int16,
    "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


def is_archive(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript zip (it has ``constants.pkl``, as torch checks)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in names)


class _Recorded:
    """An object of a ``__torch__`` class: its class name and its state, nothing run."""

    qualname = ""

    def __setstate__(self, state: object) -> None:
        self.state = state


class _StorageType:
    """``torch.HalfStorage`` and friends, named in a persistent id: only their dtype is used."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _Allowed:
    """One of the few callables ``data.pkl`` may name, wrapped afresh for every reference so
    that a BUILD opcode aimed at it fails instead of changing a shared function."""

    __slots__ = ("_func",)
    _func: Callable[..., Any]  # set once in __init__, past the refusing __setattr__

    def __init__(self, func: Callable[..., Any]) -> None:
        object.__setattr__(self, "_func", func)

    def __setattr__(self, name: str, value: object) -> None:
        raise pickle.UnpicklingError("data.pkl tries to change a function")

    def __call__(self, *args: Any) -> Any:
        return self._func(*args)


def _restore_type_tag(value: object, _type: str) -> object:
    return value  # the jit pickler's type annotation of a container


def _build_list(*values: object) -> list[object]:
    return list(values[0]) if len(values) == 1 and isinstance(values[0], list) else list(values)


_HELPERS: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): collections.OrderedDict,  # a tensor's (empty) hooks
    ("torch.jit._pickle", "restore_type_tag"): _restore_type_tag,
    **{("torch.jit._pickle", f"build_{kind}list"): _build_list
       for kind in ("int", "double", "bool", "tensor")},
}


class _Unpickler(pickle.Unpickler):
    """``data.pkl`` -> recorded objects and tensors; any other global is refused."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, name: str,
                 size: int) -> None:
        super().__init__(io.BytesIO(data))
        self._archive, self._root, self._name, self._size = archive, root, name, size
        self._classes: dict[str, type[_Recorded]] = {}
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            qualname = f"{module}.{name}"
            if qualname not in self._classes:  # a class of our own, named after theirs
                self._classes[qualname] = type(name, (_Recorded,), {"qualname": qualname})
            return self._classes[qualname]
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _Allowed(_rebuild_tensor)
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if (module, name) in _HELPERS:
            return _Allowed(_HELPERS[(module, name)])
        raise CheckpointError(
            f"{self._name} was refused: its data.pkl needs {module}.{name}, which is neither a "
            "tensor nor a TorchScript module's state; vitzoo reads TorchScript archives as data "
            "only (never their code). Re-save the weights with torch.save(model.state_dict()) "
            "or convert them to safetensors")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
                or not isinstance(pid[4], int)):
            raise CheckpointError(f"{self._name}: data.pkl names a storage as {pid!r}, which is "
                                  "not a TorchScript storage reference")
        _, kind, key, _location, numel = pid
        if key not in self._storages:
            self._storages[key] = self._read_storage(key, kind.dtype, numel)
        return self._storages[key]

    def _read_storage(self, key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        member = f"{self._root}data/{key}"
        try:
            info = self._archive.getinfo(member)
        except KeyError:
            raise CheckpointError(f"{self._name} is incomplete: storage {member} is missing; "
                                  "download or save it again") from None
        itemsize = torch.empty((), dtype=dtype).element_size()
        if (info.compress_type != zipfile.ZIP_STORED or info.file_size != numel * itemsize
                or info.compress_size != info.file_size
                or info.header_offset + info.file_size > self._size):
            raise CheckpointError(
                f"{self._name}: storage {member} holds {info.file_size} bytes "
                f"({'compressed' if info.compress_type else 'stored'}), not the {numel} "
                f"x {itemsize} stored bytes data.pkl says, within the {self._size}-byte file; "
                "the archive is damaged")
        data = bytearray(self._archive.read(member))
        return torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)



def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple[int, ...],
                    stride: tuple[int, ...], *_flags: object) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2``: a view of ``storage`` (requires_grad, hooks and
    metadata are not state and are ignored)."""
    values = [offset, *size, *stride]
    if (not isinstance(storage, torch.Tensor) or not all(type(v) is int for v in values)
            or len(size) != len(stride) or min(values, default=0) < 0):
        raise CheckpointError("a tensor in data.pkl has an invalid size, stride or offset")
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
    if math.prod(size) and extent > storage.numel():
        raise CheckpointError(f"a tensor in data.pkl reaches element {extent} of a storage "
                              f"of {storage.numel()}; the archive is damaged")
    if math.prod(size) > storage.numel():  # stride 0: copying it would allocate it in full
        raise CheckpointError(f"a tensor in data.pkl of shape {tuple(size)} has more elements "
                              f"than its storage of {storage.numel()} (a stride-0 view); the "
                              "archive is damaged or forged")
    return torch.as_strided(storage, size, stride, offset)


# -- which attributes are state ---------------------------------------------------------------
_LIST = re.compile(r"^  (__parameters__|__buffers__) = \[(.*?)\]", re.M)


def _declared(archive: zipfile.ZipFile, root: str, qualname: str,
              cache: dict[str, str | None]) -> set[str] | None:
    """The parameter and buffer names the class's TorchScript source declares (None: no
    source found, so every tensor attribute is taken)."""
    module, _, name = qualname.rpartition(".")
    member = f"{root}code/{module.replace('.', '/')}.py"
    if member not in cache:
        cache[member] = _read_text(archive, member)
    source = cache[member]
    if source is None:
        return None
    block = re.search(rf"^class {re.escape(name)}\(.*?(?=^class |\Z)", source, re.M | re.S)
    if block is None:
        return None
    found = _LIST.findall(block.group(0))
    if not found:
        return None
    return {n for _, names in found for n in re.findall(r'"([^"]+)"', names)}


def _read_text(archive: zipfile.ZipFile, member: str) -> str | None:
    try:
        info = archive.getinfo(member)
    except KeyError:
        return None
    if info.file_size > MAX_PICKLE_BYTES:
        return None
    with archive.open(info) as f:
        return f.read(MAX_PICKLE_BYTES).decode("utf-8", errors="replace")


def _collect(obj: _Recorded, prefix: str, out: dict[str, torch.Tensor],
             declared: Callable[[str], set[str] | None]) -> None:
    state = getattr(obj, "state", None)
    if not isinstance(state, Mapping):
        return
    names = declared(obj.qualname)
    for attr, value in state.items():
        if isinstance(value, torch.Tensor) and (names is None or attr in names):
            # a copy of its own: nothing data.pkl did to the view (BUILD) comes along
            out[prefix + str(attr)] = value.detach().clone(memory_format=torch.contiguous_format)
        elif isinstance(value, _Recorded):
            _collect(value, f"{prefix}{attr}.", out, declared)


# -- the archive ------------------------------------------------------------------------------
def _root(names: list[str], name: str) -> str:
    pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
    if len(pickles) != 1:
        raise CheckpointError(f"{name} is not a TorchScript archive vitzoo can read: it has "
                              f"{len(pickles)} top-level data.pkl files, not one")
    return pickles[0][: -len("data.pkl")]


def read_archive(path: str | Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive, as ``state_dict()`` names them,
    in the dtypes they were saved in; no code in the archive is run.

    Raises:
        CheckpointError: truncated or damaged, over the size limits, a byte order other than
            little-endian, or ``data.pkl`` needs anything but tensors and module states.
    """
    name = str(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # never open a FIFO or a device
            raise CheckpointError(f"{name} is not a regular file (a directory, FIFO, socket or "
                                  "character device); vitzoo reads weights from files only")
        with open(path, "rb") as f, zipfile.ZipFile(f) as archive:
            return _read(archive, name, os.fstat(f.fileno()).st_size)
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of the reader means a damaged file
        raise CheckpointError(f"cannot read TorchScript archive {name}: {err}. It is damaged "
                              "or truncated; download or save it again") from err


def _read(archive: zipfile.ZipFile, name: str, size: int) -> dict[str, torch.Tensor]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError(f"{name} has {len(infos)} members, more than the {MAX_MEMBERS} a "
                              "checkpoint may have")
    if any(i.flag_bits & 0x1 for i in infos):
        raise CheckpointError(f"{name} has encrypted members; TorchScript archives never do")
    root = _root([i.filename for i in infos], name)
    order = _read_text(archive, f"{root}byteorder")
    if order is not None and order.strip() != "little":
        raise CheckpointError(f"{name} was saved on a {order.strip()}-endian machine; vitzoo "
                              "reads little-endian archives only")
    info = archive.getinfo(f"{root}data.pkl")
    if info.file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(f"{name}: data.pkl is {info.file_size} bytes, over the "
                              f"{MAX_PICKLE_BYTES} a module tree needs")
    with archive.open(info) as f:
        data = f.read(MAX_PICKLE_BYTES + 1)
    top = _Unpickler(data, archive, root, name, size).load()
    if not isinstance(top, _Recorded):
        raise CheckpointError(f"{name}: data.pkl holds a {type(top).__name__}, not a "
                              "TorchScript module")
    cache: dict[str, str | None] = {}
    state: dict[str, torch.Tensor] = {}
    _collect(top, "", state, lambda qualname: _declared(archive, root, qualname, cache))
    return state
