"""Reading state dicts from disk and loading them into models with a readable report."""

from __future__ import annotations

import pickle
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError, CheckpointMismatchError

__all__ = ["CheckpointError", "CheckpointMismatchError", "LoadReport", "load_checkpoint",
           "load_state_dict", "read_model_file", "save_model"]

FORMAT_NAME = "vitzoo"

# Training checkpoints keep the weights under one of these keys (timm, DeiT, EMA variants).
_WRAPPER_KEYS = ("model", "state_dict", "model_ema", "state_dict_ema")
# Wrappers that DDP and torch.compile put in front of every key.
_KEY_PREFIXES = ("module.", "_orig_mod.")




@dataclass
class LoadReport:
    """What happened when a state dict was loaded into a model."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    """key -> (shape in the checkpoint, shape in the model)."""
    reshaped: dict[str, str] = field(default_factory=dict)
    """key -> how it was adapted (an input convolution for another channel count)."""
    dropped: list[str] = field(default_factory=list)
    """Keys of the file left out on purpose (a head replaced for another class count)."""
    resampled: dict[str, str] = field(default_factory=dict)
    """key -> how it was resized (position embeddings for another image size)."""
    source_format: str | None = None
    """The layout the checkpoint was read in (``timm``, ``hf_transformers``, ...)."""

    @property
    def ok(self) -> bool:
        """No key missing, unexpected or of another shape (dropped/resampled keys are fine)."""
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """A grouped, human-readable account of every difference."""
        if self.ok and not (self.dropped or self.resampled or self.reshaped):
            return "all keys matched"
        lines = []
        if self.missing:
            lines.append(f"missing from the checkpoint ({len(self.missing)}): "
                         + _group_keys(self.missing))
        if self.unexpected:
            lines.append(f"in the checkpoint but not in the model ({len(self.unexpected)}): "
                         + _group_keys(self.unexpected))
        if self.reshaped:
            lines.append("adapted: " + "; ".join(f"{k} ({how})"
                                                 for k, how in self.reshaped.items()))
        if self.dropped:
            lines.append(f"left out on purpose ({len(self.dropped)}): "
                         + _group_keys(self.dropped))
        if self.resampled:
            lines.append("resampled: " + "; ".join(f"{k} ({how})"
                                                  for k, how in self.resampled.items()))
        if self.mismatched:
            shapes = [f"{k} {tuple(a)} in the file vs {tuple(b)} in the model"
                      for k, (a, b) in self.mismatched.items()]
            lines.append(f"different shapes ({len(self.mismatched)}): " + "; ".join(shapes[:8])
                         + (" ..." if len(shapes) > 8 else ""))
        return "\n".join(lines)


def _group_keys(keys: Iterable[str]) -> str:
    """``blocks.0.attn.qkv.bias, blocks.1.attn.qkv.bias`` -> ``blocks.*.attn.qkv.bias (x2)``."""
    counts = Counter(re.sub(r"\.\d+\.", ".*.", k) for k in keys)
    return ", ".join(k if n == 1 else f"{k} (x{n})" for k, n in counts.items())


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a PyTorch pickle (``weights_only=True``).

    Training wrappers (``model``, ``state_dict``, ``model_ema``, ``state_dict_ema``) and the
    ``module.`` / ``_orig_mod.`` key prefixes are removed.

    Raises:
        CheckpointError: the file is missing, unreadable, refused or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    if path.suffix == ".npz":
        raise CheckpointError(
            f"{path} is a Google JAX .npz: use vitzoo.load_model(path), which reads the "
            "architecture and numerics from it, or convert it with `vitzoo convert`"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: object = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch names the blocked callable ("GLOBAL posix.system"); anything else is damage.
        if "GLOBAL" not in str(err):
            raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
        raise CheckpointError(
            f"{path} was refused: it needs more than tensors to unpickle (arbitrary code); "
            "vitzoo only reads weights_only pickles. Re-save it with "
            "torch.save(model.state_dict(), path) or convert it to safetensors"
        ) from err
    except Exception as err:  # noqa: BLE001 - any reader failure means a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    if isinstance(data, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor)
                                                 for v in data.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    state = {}
    for key, value in data.items():
        state[_strip_prefixes(key)] = value
    return state


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _KEY_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def compare_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> LoadReport:
    """The differences between a model's state dict and ``state``, without loading anything."""
    own = model.state_dict()
    report = LoadReport(
        missing=[k for k in own if k not in state],
        unexpected=[k for k in state if k not in own],
    )
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            report.mismatched[key] = (tuple(value.shape), tuple(own[key].shape))
    return report


_INPUT_CONVS = ("patch_embed.proj.weight", "patch_embed.backbone.stem.conv.weight",
                "patch_embed.backbone.conv.weight")


def _adapt_input_channels(state: dict[str, torch.Tensor], own: Mapping[str, torch.Tensor],
                          report: LoadReport) -> None:
    from .adapters.in_chans import adapt_input_conv

    for key in _INPUT_CONVS:
        if key == "patch_embed.proj.weight" and "patch_embed.backbone.stem.conv.weight" in own:
            continue  # a hybrid's patch projection sees features, not images
        if key not in state or key not in own:
            continue
        src, dst = state[key].shape, own[key].shape
        if src != dst and src[1] == 3 and (src[0], *src[2:]) == (dst[0], *dst[2:]):
            state[key] = adapt_input_conv(state[key], dst[1])
            how = "summed" if dst[1] == 1 else "repeated and scaled by 3/" + str(dst[1])
            report.reshaped[key] = f"3 -> {dst[1]} input channels, {how}"


def load_checkpoint(model: nn.Module, path: str | Path | Mapping[str, torch.Tensor], *,
                    strict: bool = True, source_format: str = "auto") -> LoadReport:
    """Load a state dict written by vitzoo, timm, DeiT, Hugging Face transformers, torchvision
    or the original PyTorch port of Google's ViT into ``model``.

    The layout is detected from the key names (or named with ``source_format``). 3-channel
    weights load into models with other ``in_chans`` (summed for 1 channel, otherwise repeated
    and scaled by ``3 / in_chans``).

    Args:
        model: the model to load into (changed in place).
        path: a ``.safetensors`` / ``.pth`` / ``.bin`` file, or a state dict.
        strict: raise when any key is missing, unexpected or of a different shape; with
            ``strict=False`` the keys that fit are loaded and the rest reported.
        source_format: ``"auto"``, ``"timm"``, ``"hf_transformers"``, ``"torchvision"`` or
            ``"vit_pytorch"``.

    Returns:
        The :class:`LoadReport`.

    Raises:
        CheckpointMismatchError: with ``strict=True``, when the checkpoint does not fit; the
            message explains the difference in words and names architectures that fit. The
            model is left unchanged.
    """
    from .adapters import convert_state_dict
    from .diagnose import explain_mismatch

    name = "the state dict" if isinstance(path, Mapping) else str(path)
    raw = path if isinstance(path, Mapping) else load_state_dict(path)
    try:
        state, fmt, unmatched = convert_state_dict(raw, source_format)
    except ValueError as err:
        raise CheckpointError(f"{name}: {err}") from err
    report = LoadReport(source_format=fmt)
    _adapt_input_channels(state, model.state_dict(), report)
    diff = compare_state_dict(model, state)
    report.missing, report.mismatched = diff.missing, diff.mismatched
    report.unexpected = diff.unexpected + unmatched
    if strict and not report.ok:
        reasons = "".join(f"\n- {line}" for line in explain_mismatch(state, model))
        raise CheckpointMismatchError(
            f"{name} ({fmt} layout) does not fit {type(model).__name__}:{reasons}\n"
            f"{report.describe()}\n"
            "Create the architecture the checkpoint was saved from, or pass strict=False "
            "to load the keys that fit."
        )
    fitting = {k: v for k, v in state.items() if k not in report.mismatched
               and k not in report.unexpected}
    model.load_state_dict(fitting, strict=False)
    return report


def save_model(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` as one self-describing ``.safetensors`` file (atomically).

    The metadata holds the full config (``vitzoo_config``) and ``pretrained_cfg``, so
    :func:`vitzoo.load_model` rebuilds the exact architecture.
    """
    import json

    from ._utils import atomic_path
    from ._version import __version__
    from .safetensors_stream import write_safetensors

    path = Path(path)
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise CheckpointError(f"{type(model).__name__} has no vitzoo config to save")
    metadata = {
        "format": FORMAT_NAME,
        "vitzoo_version": __version__,
        "vitzoo_config": cfg.to_json(),
        "pretrained_cfg": json.dumps(getattr(model, "pretrained_cfg", {}), default=list),
    }
    tensors = ((k, v.detach().cpu().contiguous().numpy()) for k, v in model.state_dict().items())
    with atomic_path(path) as tmp:
        write_safetensors(tmp, tensors, metadata)
    return path


def read_model_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a ``.safetensors`` file.

    Raises:
        CheckpointError: missing, truncated or not safetensors.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except Exception as err:  # noqa: BLE001 - the reader's errors all mean a bad file
        raise CheckpointError(
            f"cannot read {path}: {err} (is it a complete .safetensors file?)"
        ) from err
    return tensors, metadata


def save_state_dict(state: Mapping[str, torch.Tensor], path: str | Path,
                    metadata: Mapping[str, str] | None = None) -> Path:
    """Write a state dict as ``.safetensors`` atomically (no config: see :func:`save_model`)."""
    from ._utils import atomic_path
    from .safetensors_stream import write_safetensors

    path = Path(path)
    tensors = ((k, v.detach().cpu().contiguous().numpy()) for k, v in state.items())
    with atomic_path(path) as tmp:
        write_safetensors(tmp, tensors, dict(metadata or {}))
    return path
