"""``model.pretrained_cfg``: one typed schema for what a model's weights expect and where they
came from, with timm's keys (plus vitzoo's provenance), built in one place for every way a
model comes to be (by name, from a tag's weights, from a file, by fine-tuning)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import ViTConfig
from .entry import GOOGLE_MEAN, GOOGLE_STD, IMAGENET_MEAN, IMAGENET_STD, PretrainedEntry

__all__ = ["PretrainedCfg", "build_pretrained_cfg"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainedCfg:
    """Preprocessing and provenance of a model's weights.

    The first block of fields are timm's ``pretrained_cfg`` keys with timm's meaning; the rest
    are vitzoo's: ``origin`` (``"jax"`` or ``"pytorch"``, the framework whose numerics the
    weights need), ``sha256`` of the original file, ``paper``, the reported ImageNet ``top1``,
    ``label_names`` of the head's classes, the fine-tuning ``dataset``, and the ``file`` /
    ``source`` the weights were read from. The defaults are timm's for ViTs (mean = std =
    0.5, crop_pct 0.9, bicubic), which :func:`vitzoo.resolve_data_config` also assumes.
    """

    architecture: str | None = None
    tag: str | None = None
    url: str | None = None
    hf_hub_id: str | None = None
    num_classes: int = 1000
    input_size: tuple[int, ...] = (3, 224, 224)
    fixed_input_size: bool = True
    interpolation: str = "bicubic"
    crop_pct: float = 0.9
    crop_mode: str = "center"
    mean: tuple[float, ...] = GOOGLE_MEAN
    std: tuple[float, ...] = GOOGLE_STD
    first_conv: str = "patch_embed.proj"
    classifier: str | tuple[str, ...] = "head"
    license: str | None = None
    origin: str | None = None
    sha256: str | None = None
    paper: str | None = None
    top1: float | None = None
    label_names: tuple[str, ...] | None = None
    dataset: str | None = None
    file: str | None = None
    source: str | None = None

    def replace(self, **changes: Any) -> PretrainedCfg:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The dict that ``model.pretrained_cfg`` holds (``label_names`` as a list)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.label_names is not None:
            data["label_names"] = list(self.label_names)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PretrainedCfg:
        """Read a stored ``pretrained_cfg`` (a file's metadata, a hub ``config.json``).

        Keys that are not fields are ignored (older and newer files may have others).

        Raises:
            ValueError: a field has a value of the wrong kind.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"pretrained_cfg must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        ignored = sorted(str(k) for k in data if k not in names)
        if ignored:
            logger.debug("pretrained_cfg: ignoring unknown keys %s", ", ".join(ignored))
        return cls(**{k: _coerce(k, v) for k, v in data.items() if k in names})


_FLOAT_TUPLES = ("mean", "std")
_STR_FIELDS = ("architecture", "tag", "url", "hf_hub_id", "interpolation", "crop_mode",
               "first_conv", "license", "origin", "sha256", "paper", "dataset", "file", "source")


def _coerce(name: str, value: Any) -> Any:
    """A stored value as the field's type (JSON turns tuples into lists)."""
    if value is None and name not in ("num_classes", "input_size", "mean", "std"):
        return None
    if name in _FLOAT_TUPLES:
        return _tuple_of(value, (int, float), float, name)
    if name == "input_size":
        return _tuple_of(value, (int,), int, name)
    if name == "label_names":
        return _tuple_of(value, (str, int), str, name)
    if name == "classifier":
        return value if isinstance(value, str) else _tuple_of(value, (str,), str, name)
    if name in _STR_FIELDS:
        return _checked(value, (str,), name)
    if name == "num_classes":
        return _checked(value, (int,), name)
    if name == "fixed_input_size":
        return _checked(value, (bool,), name)
    return float(_checked(value, (int, float), name))  # crop_pct, top1


def _checked(value: Any, kinds: tuple[type, ...], name: str) -> Any:
    # bool is an int to isinstance, but True is no class count or crop fraction
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ValueError(f"pretrained_cfg {name}={value!r} is not a "
                         f"{' or '.join(k.__name__ for k in kinds)}")
    return value


def _tuple_of(value: Any, kinds: tuple[type, ...], convert: type, name: str) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"pretrained_cfg {name}={value!r} is not a list")
    return tuple(convert(_checked(v, kinds, name)) for v in value)


def _defaults_for(arch: str | None, tag: str | None, cfg: ViTConfig) -> PretrainedCfg:
    """Architectures without weights of their own: ImageNet statistics, crop_pct 0.875 (1.0 at
    384 and above), bicubic."""
    return PretrainedCfg(architecture=arch, tag=tag, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                         crop_pct=1.0 if min(cfg.img_size) >= 384 else 0.875)


def _first_conv(cfg: ViTConfig) -> str:
    if cfg.backbone_layers is None:
        return "patch_embed.proj"
    return "patch_embed.backbone." + ("stem.conv" if cfg.backbone_layers else "conv")


def build_pretrained_cfg(cfg: ViTConfig, *, arch: str | None = None, tag: str | None = None,
                         entry: PretrainedEntry | None = None,
                         stored: Mapping[str, Any] | PretrainedCfg | None = None,
                         **provenance: Any) -> PretrainedCfg:
    """The pretrained cfg of a model built as ``cfg``: the one place every path makes it.

    Starts from the weight table's ``entry``, else a ``stored`` cfg (read from a file), else
    the defaults of ``arch``; then the fields the model itself decides (``input_size``,
    ``num_classes``, ``first_conv``, ``classifier``) are set from ``cfg``, and ``provenance``
    (``file``, ``source``, ``origin``, ``label_names``, ``dataset`` ...) on top. Label names
    that do not match the head's class count are dropped.
    """
    if entry is not None:
        base = PretrainedCfg.from_dict(entry.to_dict())
    elif isinstance(stored, PretrainedCfg):
        base = stored
    elif stored is not None:
        base = PretrainedCfg.from_dict(stored)
    else:
        base = _defaults_for(arch, tag, cfg)
    if arch is not None and base.architecture is None:
        base = base.replace(architecture=arch)
    fields: dict[str, Any] = {
        "input_size": (cfg.in_chans, *cfg.img_size), "num_classes": cfg.num_classes,
        "first_conv": _first_conv(cfg),
        "classifier": ("head", "head_dist") if cfg.distilled else "head",
    }
    fields.update({k: _coerce(k, v) for k, v in provenance.items()})
    pretrained = base.replace(**fields)
    names = pretrained.label_names
    if names is not None and len(names) != cfg.num_classes:
        pretrained = pretrained.replace(label_names=None)
    return pretrained
