"""Bytes <-> tensors: safetensors (with vitzoo's metadata, built in one place), weights-only
PyTorch pickles, Google's ``.npz`` archives and JSON side files, and the detection of a file's
format from its content.

Nothing here builds a model or knows another library's key names (that is
:mod:`vitzoo.adapters`); fitting tensors into a model is :mod:`vitzoo.loading`.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from torch import nn

from . import _torchscript
from ._utils import atomic_path
from ._version import __version__
from .config import ViTConfig
from .errors import CheckpointError

__all__ = ["FORMAT_NAME", "detect_format", "load_state_dict", "parse_vitzoo_metadata",
           "read_json", "read_npz", "read_safetensors", "read_safetensors_metadata",
           "save_model", "save_state_dict", "vitzoo_metadata", "write_safetensors"]

FORMAT_NAME = "vitzoo"

# Training checkpoints keep the weights under one of these keys (timm, DeiT, EMA variants).
WRAPPER_KEYS = ("model", "state_dict", "model_ema", "state_dict_ema")
# Wrappers that DDP and torch.compile put in front of every key.
KEY_PREFIXES = ("module.", "_orig_mod.")

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_2 = b"\x80"  # torch.save's legacy format and every pickle since protocol 2


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")


def _head(path: Path, size: int = 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _is_safetensors(head: bytes) -> bool:
    # 8-byte little-endian header length, then the JSON header.
    return len(head) > 8 and head[8:9] == b"{"


def _zip_is_npz(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


def detect_format(path: str | Path) -> str:
    """What a checkpoint is, from its content: ``"hub_dir"`` (a directory), ``"jax_npz"``,
    ``"vitzoo"`` (safetensors with vitzoo's config), ``"safetensors"`` or ``"pickle"``
    (PyTorch, TorchScript archives included; plain state dicts need an architecture).

    Raises:
        CheckpointError: the path does not exist, or its bytes are none of these.
    """
    path = Path(path)
    if path.is_dir():
        return "hub_dir"
    _require_file(path)
    head = _head(path)
    if head.startswith(_ZIP_MAGIC):
        return "jax_npz" if _zip_is_npz(path) else "pickle"
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


# -- reading --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _opened_safetensors(path: Path) -> Iterator[Any]:
    """``safe_open`` whose every failure, opening or reading, is a :class:`CheckpointError`."""
    try:
        with safe_open(str(path), framework="pt") as f:
            yield f
    except Exception as err:  # noqa: BLE001 - the reader's errors all mean a bad file
        raise CheckpointError(
            f"cannot read {path}: {err} (is it a complete .safetensors file?)"
        ) from err


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, reading only its header."""
    with _opened_safetensors(Path(path)) as f:
        return dict(f.metadata() or {})


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a ``.safetensors`` file.

    Raises:
        CheckpointError: missing, truncated or not safetensors.
    """
    path = Path(path)
    _require_file(path)
    with _opened_safetensors(path) as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118


def _torch_load(path: Path) -> object:
    try:
        # An open file, not the path: torch.load treats some suffixes specially.
        with open(path, "rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)
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
    TorchScript archive, read as data (which ``torch.load`` would hand to ``torch.jit.load``)."""
    if _head(path, 4) == _ZIP_MAGIC and _torchscript.is_archive(path):
        return _torchscript.read_archive(path)
    return _torch_load(path)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a safetensors file, a PyTorch pickle (``weights_only=True``) or
    a TorchScript archive (OpenAI's CLIP files; its code is never run), telling them apart by
    their content.

    Training wrappers (``model``, ``state_dict``, ``model_ema``, ``state_dict_ema``) and the
    ``module.`` / ``_orig_mod.`` key prefixes are removed.

    Raises:
        CheckpointError: the file is missing, unreadable, refused or not a state dict.
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
    if isinstance(data, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor)
                                                 for v in data.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return {strip_prefixes(str(key)): value for key, value in data.items()}


def strip_prefixes(key: str) -> str:
    """``module._orig_mod.blocks.0...`` -> ``blocks.0...`` (DDP and torch.compile wrappers)."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in KEY_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickles).

    Raises:
        CheckpointError: missing, truncated, corrupt, pickled or empty.
    """
    path = Path(path)
    _require_file(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"cannot read {path} as an .npz archive: {err}. The file is truncated, corrupt or "
            "not a NumPy archive; download it again"
        ) from err
    if not arrays:
        raise CheckpointError(f"{path} holds no arrays")
    return arrays


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from a side file (``config.json``, ``preprocessor_config.json``).

    Raises:
        CheckpointError: missing, not JSON, or not an object.
    """
    path = Path(path)
    _require_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a JSON {type(data).__name__}, not an object")
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


def parse_vitzoo_metadata(metadata: Mapping[str, str], name: str
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config fields, pretrained cfg)`` from :func:`vitzoo_metadata`'s output.

    Raises:
        CheckpointError: the config is missing or not a JSON object.
    """
    try:
        config = json.loads(metadata["vitzoo_config"])
        pretrained = json.loads(metadata.get("pretrained_cfg", "{}"))
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{name} has no readable vitzoo_config metadata: {err}") from err
    if not isinstance(config, dict) or not isinstance(pretrained, dict):
        raise CheckpointError(f"{name}: vitzoo_config and pretrained_cfg must be JSON objects")
    return config, pretrained


# -- writing --------------------------------------------------------------------------------------
_DTYPES = {
    np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
    np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16",
    np.dtype("int8"): "I8", np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL",
}


def write_safetensors(path: str | Path, tensors: Iterable[tuple[str, np.ndarray]],
                      metadata: Mapping[str, str] | None = None) -> None:
    """Write ``(name, array)`` pairs to ``path`` as they are produced (not atomically: wrap
    in ``atomic_path``).

    The format is an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
    byte offsets; ``__metadata__`` -> str -> str) padded with spaces to 8 bytes, then the raw
    little-endian data. The header must come first, so the data goes to a scratch file and is
    copied behind the header at the end: memory holds one array at a time.
    """
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
        _write_with_header(path, header, scratch)


def _write_with_header(path: str | Path, header: Mapping[str, object], scratch: Any) -> None:
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    scratch.seek(0)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        while chunk := scratch.read(16 << 20):
            out.write(chunk)


def _numpy_items(state: Mapping[str, torch.Tensor]) -> Iterable[tuple[str, np.ndarray]]:
    for key, value in state.items():
        yield key, value.detach().cpu().contiguous().numpy()


def save_state_dict(state: Mapping[str, torch.Tensor], path: str | Path,
                    metadata: Mapping[str, str] | None = None) -> Path:
    """Write a state dict as ``.safetensors`` atomically (no config: see :func:`save_model`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        write_safetensors(tmp, _numpy_items(state), dict(metadata or {}))
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
