"""``model.pretrained_cfg``: one typed schema for what a model's weights expect and where they
came from, with timm's keys (plus vitzoo's provenance), built in one place for every way a
model comes to be (by name, from a tag's weights, from a file, by fine-tuning)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._utils import suggestion
from ..config import ViTConfig
from ..errors import UnknownOverrideError
from .entry import GOOGLE_MEAN, GOOGLE_STD, IMAGENET_MEAN, IMAGENET_STD, PretrainedEntry

__all__ = ["PretrainedCfg", "build_pretrained_cfg", "field_names", "resolve_pretrained_cfg"]

# timm's keys that name where weights come from: overlaying one resets custom_load (timm's rule)
SOURCE_KEYS = ("file", "url", "hf_hub_id", "hf_hub_filename")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainedCfg:
    """Preprocessing and provenance of a model's weights.

    The fields up to ``notes`` are timm's ``pretrained_cfg`` keys, in timm's order and with
    timm's meaning (timm's in-memory ``state_dict`` source aside); the rest are vitzoo's:
    ``origin`` (``"jax"`` or ``"pytorch"``, the framework whose numerics the weights need),
    ``sha256`` of the original file, ``paper``, the reported ImageNet ``top1`` (and how it was
    measured, ``top1_protocol``) and the fine-tuning ``dataset``. ``file`` / ``source`` say
    where the weights were read from. The defaults are timm's for ViTs (mean = std = 0.5,
    crop_pct 0.9, bicubic, a fixed input size), which :func:`vitzoo.resolve_data_config`
    also assumes.
    """

    url: str | None = None
    file: str | None = None
    hf_hub_id: str | None = None
    hf_hub_filename: str | None = None
    source: str | None = None
    architecture: str | None = None
    tag: str | None = None
    custom_load: bool = False
    """The ``url`` file is in a foreign format (Google's ``.npz``) that needs converting."""
    input_size: tuple[int, ...] = (3, 224, 224)
    test_input_size: tuple[int, ...] | None = None
    min_input_size: tuple[int, ...] | None = None
    fixed_input_size: bool = True
    """False only for models built with ``dynamic_img_size=True`` (they take any size)."""
    interpolation: str = "bicubic"
    crop_pct: float = 0.9
    test_crop_pct: float | None = None
    crop_mode: str = "center"
    mean: tuple[float, ...] = GOOGLE_MEAN
    std: tuple[float, ...] = GOOGLE_STD
    num_classes: int = 1000
    label_offset: int | None = None
    label_names: tuple[str, ...] | None = None
    label_descriptions: dict[str, str] | None = None
    pool_size: tuple[int, ...] | None = None
    """None: a ViT's ``forward_features`` gives tokens, not a spatial map (timm's value)."""
    test_pool_size: tuple[int, ...] | None = None
    first_conv: str = "patch_embed.proj"
    classifier: str | tuple[str, ...] = "head"
    license: str | None = None
    description: str | None = None
    origin_url: str | None = None
    paper_name: str | None = None
    paper_ids: str | tuple[str, ...] | None = None
    notes: tuple[str, ...] | None = None
    origin: str | None = None
    sha256: str | None = None
    paper: str | None = None
    top1: float | None = None
    top1_protocol: str | None = None
    dataset: str | None = None

    def replace(self, **changes: Any) -> PretrainedCfg:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The dict that ``model.pretrained_cfg`` holds (``label_names`` as a list)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.label_names is not None:
            data["label_names"] = list(self.label_names)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> PretrainedCfg:
        """Read a stored ``pretrained_cfg`` (a file's metadata, a hub ``config.json``) or one
        passed in (``create_model(pretrained_cfg=...)``).

        Args:
            data: the keys and values.
            strict: raise on keys that are not fields; otherwise they are ignored (older and
                newer files may have others).

        Raises:
            ValueError: a field has a value of the wrong kind.
            UnknownOverrideError: with ``strict``, a key is not a field (valid keys listed).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"pretrained_cfg must be a JSON object, got {type(data).__name__}")
        names = field_names()
        unknown = sorted(str(k) for k in data if k not in names)
        if unknown and strict:
            raise UnknownOverrideError(
                f"unknown pretrained_cfg key(s) {', '.join(map(repr, unknown))}."
                + "".join(suggestion(k, names) for k in unknown)
                + f" Valid keys: {', '.join(names)}.")
        if unknown:
            logger.debug("pretrained_cfg: ignoring unknown keys %s", ", ".join(unknown))
        return cls(**{k: _coerce(k, v) for k, v in data.items() if k in names})


def field_names() -> tuple[str, ...]:
    """The keys of a pretrained cfg, in order (timm's first)."""
    return tuple(f.name for f in dataclasses.fields(PretrainedCfg))


_INT_TUPLES = ("input_size", "test_input_size", "min_input_size", "pool_size", "test_pool_size")
_STR_TUPLES = ("label_names", "notes", "paper_ids", "classifier")  # a str is also accepted
_STR_FIELDS = ("url", "file", "hf_hub_id", "hf_hub_filename", "source", "architecture", "tag",
               "interpolation", "crop_mode", "first_conv", "license", "description",
               "origin_url", "paper_name", "origin", "sha256", "paper", "dataset",
               "top1_protocol")
_REQUIRED = ("num_classes", "input_size", "mean", "std")


def _coerce(name: str, value: Any) -> Any:
    """A stored value as the field's type (JSON turns tuples into lists)."""
    if value is None and name not in _REQUIRED:
        return None
    if name in ("mean", "std"):
        return _tuple_of(value, (int, float), float, name)
    if name in _INT_TUPLES:
        return _tuple_of(value, (int,), int, name)
    if name in _STR_TUPLES:
        if isinstance(value, str) and name != "label_names":  # timm's str forms
            return value if name in ("classifier", "paper_ids") else (value,)
        return _tuple_of(value, (str, int) if name == "label_names" else (str,), str, name)
    if name in _STR_FIELDS:
        return _checked(value, (str,), name)
    if name in ("num_classes", "label_offset"):
        return _checked(value, (int,), name)
    if name in ("fixed_input_size", "custom_load"):
        return _checked(value, (bool,), name)
    if name == "label_descriptions":
        if not isinstance(value, Mapping):
            raise ValueError(f"pretrained_cfg label_descriptions={value!r} is not a mapping")
        return {str(k): str(v) for k, v in value.items()}
    return float(_checked(value, (int, float), name))  # crop_pct, test_crop_pct, top1


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
    ``num_classes``, ``fixed_input_size``, ``first_conv``, ``classifier``) are set from
    ``cfg``, and ``provenance``
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
        "fixed_input_size": not cfg.dynamic_img_size, "first_conv": _first_conv(cfg),
        "classifier": ("head", "head_dist") if cfg.distilled else "head",
    }
    fields.update({k: _coerce(k, v) for k, v in provenance.items()})
    pretrained = base.replace(**fields)
    names = pretrained.label_names
    if names is not None and len(names) != cfg.num_classes:
        pretrained = pretrained.replace(label_names=None)
    return pretrained


def resolve_pretrained_cfg(cfg: ViTConfig, *, arch: str, tag: str | None = None,
                           entry: PretrainedEntry | None = None,
                           pretrained_cfg: Mapping[str, Any] | PretrainedCfg | None = None,
                           overlay: Mapping[str, Any] | None = None) -> PretrainedCfg:
    """What ``create_model(pretrained_cfg=..., pretrained_cfg_overlay=...)`` describes: the
    weights' cfg before the model decides its own fields (timm's ``resolve_pretrained_cfg``).

    A ``pretrained_cfg`` replaces the weight table's cfg (``entry``; the defaults of ``arch``
    without one); ``overlay`` then replaces single keys. Overlaying a source key (``file``,
    ``url``, ``hf_hub_id``, ``hf_hub_filename``) resets ``custom_load`` unless it is given too.

    Raises:
        UnknownOverrideError: a key of either is not a pretrained-cfg key.
        ValueError: a value of the wrong kind.
    """
    if isinstance(pretrained_cfg, PretrainedCfg):
        base = pretrained_cfg
    elif pretrained_cfg is not None:
        base = PretrainedCfg.from_dict(pretrained_cfg, strict=True)
    elif entry is not None:
        base = PretrainedCfg.from_dict(entry.to_dict())
    else:
        base = _defaults_for(arch, tag, cfg)
    changes = dict(overlay or {})
    PretrainedCfg.from_dict(changes, strict=True)  # names and kinds checked
    if base.architecture is None:
        changes.setdefault("architecture", arch)
    if any(changes.get(k) for k in SOURCE_KEYS):
        changes.setdefault("custom_load", False)
    return base.replace(**{k: _coerce(k, v) for k, v in changes.items()})
