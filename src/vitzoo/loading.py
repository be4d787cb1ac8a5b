"""Tensors -> model: THE build-and-load path, the :class:`LoadReport`, what a checkpoint file
says about itself, and the explanations of a checkpoint that does not fit.

Every way weights reach a model goes through :func:`load_state`: ``create_model(pretrained=
True)``, ``create_model(checkpoint_path=...)``, :func:`vitzoo.load_model`,
:func:`load_checkpoint` and ``convert_checkpoint(verify=True)``. It fits the state dict to the
requested config (a replaced head, resampled position embeddings, adapted input channels),
builds the model without initialising what is then loaded, loads it and initialises only the
new parts.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from . import io, registry
from ._utils import skip_init
from .adapters import (
    STATE_DICT_FORMATS,
    big_vision,
    convert_state_dict,
    hf_transformers,
    jax_npz,
    json_fields,
    open_clip,
    timm,
)
from .adapters.in_chans import adapt_input_conv
from .adapters.rename import contiguous
from .config import ViTConfig
from .errors import (
    CheckpointError,
    CheckpointMismatchError,
    ConfigError,
    NonFiniteWeightsWarning,
    VitzooError,
)
from .layers import resample_pos_embed
from .layers.helpers import is_square
from .models import VisionTransformer, build_model
from .pretrained import GOOGLE_PREPROCESSING

__all__ = ["CheckpointFacts", "LoadReport", "Source", "StateDict", "compare_state_dict",
           "explain_mismatch", "fit_dtypes", "fit_state", "iter_jax_state", "jax_source",
           "load_checkpoint", "load_state", "matching_architectures", "read_source",
           "read_state_dict", "warn_non_finite"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called with ``(done, total)`` arrays while a file is converted (``_utils.Progress`` is one)."""


# -- the report -----------------------------------------------------------------------------------
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
    notes: list[str] = field(default_factory=list)
    """What the reader did on purpose, in words (``text tower (N keys) ignored``)."""

    @property
    def ok(self) -> bool:
        """No key missing, unexpected or of another shape (dropped/resampled keys are fine)."""
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """A grouped, human-readable account of every difference."""
        if self.ok and not (self.dropped or self.resampled or self.reshaped or self.notes):
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
        return "\n".join(lines + self.notes)


def _group_keys(keys: Iterable[str]) -> str:
    """``blocks.0.attn.qkv.bias, blocks.1.attn.qkv.bias`` -> ``blocks.*.attn.qkv.bias (x2)``."""
    counts = Counter(re.sub(r"\.\d+\.", ".*.", k) for k in keys)
    return ", ".join(k if n == 1 else f"{k} (x{n})" for k, n in counts.items())


# -- what a state dict says about its architecture ------------------------------------------------
@dataclass(frozen=True)
class CheckpointFacts:
    """What a vitzoo-layout state dict (or a config) says about its architecture."""

    width: int | None
    depth: int
    patch: tuple[int, int] | None
    grid_tokens: int | None
    class_token: bool
    distilled: bool
    hybrid: bool
    num_classes: int
    layer_scale: bool
    map_head: bool
    representation: bool
    reg_tokens: int = 0
    no_embed_class: bool = False
    """The position table has no rows for the prefix tokens (DeiT III, timm's DINOv2-reg)."""
    pre_norm: bool = False
    patch_bias: bool = True
    mlp_hidden: int | None = None
    swiglu: bool = False
    qk_norm: bool = False

    @classmethod
    def of(cls, state: Mapping[str, torch.Tensor]) -> CheckpointFacts:
        """The facts of ``state``; a tensor of a rank no model has counts as absent (the
        load then reports it as a shape mismatch)."""
        proj = _of_rank(state, "patch_embed.proj.weight", 4)
        hybrid = any(k.startswith("patch_embed.backbone.") for k in state)
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
        reg = state.get("reg_token")
        reg_tokens = int(reg.shape[1]) if reg is not None and reg.dim() == 3 else 0
        prefix = int("cls_token" in state) + int("dist_token" in state) + reg_tokens
        pos = state.get("pos_embed")
        rows = int(pos.shape[1]) if pos is not None and pos.dim() == 3 else None
        no_embed_class = bool(rows and prefix and is_square(rows)
                              and not is_square(rows - prefix))
        head = _of_rank(state, "head.weight", 2)
        fc1 = _of_rank(state, "blocks.0.mlp.fc1.weight", 2)
        fc2 = _of_rank(state, "blocks.0.mlp.fc2.weight", 2)
        mlp_hidden = int(fc2.shape[1]) if fc2 is not None else None
        return cls(
            width=int(proj.shape[0]) if proj is not None else None, depth=len(blocks),
            patch=(int(proj.shape[-2]), int(proj.shape[-1])) if proj is not None and not hybrid
            else None,
            grid_tokens=None if rows is None else rows - (0 if no_embed_class else prefix),
            class_token="cls_token" in state, distilled="dist_token" in state, hybrid=hybrid,
            num_classes=int(head.shape[0]) if head is not None else 0,
            layer_scale=any(k.endswith("ls1.gamma") for k in state),
            map_head="attn_pool.latent" in state,
            representation="pre_logits.fc.weight" in state,
            reg_tokens=reg_tokens, no_embed_class=no_embed_class,
            pre_norm="norm_pre.weight" in state,
            patch_bias=hybrid or "patch_embed.proj.bias" in state, mlp_hidden=mlp_hidden,
            swiglu=bool(fc1 is not None and mlp_hidden and fc1.shape[0] == 2 * mlp_hidden),
            qk_norm="blocks.0.attn.q_norm.weight" in state,
        )

    @classmethod
    def of_config(cls, cfg: ViTConfig) -> CheckpointFacts:
        """The facts of the state dict a model built as ``cfg`` has."""
        hybrid = cfg.backbone_layers is not None
        return cls(
            width=cfg.embed_dim, depth=cfg.depth, patch=None if hybrid else cfg.patch_size,
            grid_tokens=cfg.num_patches if cfg.pos_embed == "learn" else None,
            class_token=cfg.class_token, distilled=cfg.distilled, hybrid=hybrid,
            num_classes=cfg.num_classes, layer_scale=cfg.init_values is not None,
            map_head=cfg.global_pool == "map", representation=bool(cfg.representation_size),
            reg_tokens=cfg.reg_tokens,
            no_embed_class=cfg.no_embed_class and cfg.num_prefix_tokens > 0,
            pre_norm=cfg.pre_norm, patch_bias=cfg.patch_bias, mlp_hidden=cfg.mlp_hidden_dim,
            swiglu=cfg.mlp_layer == "swiglu", qk_norm=cfg.qk_norm,
        )



def _of_rank(state: Mapping[str, torch.Tensor], key: str, ndim: int) -> torch.Tensor | None:
    value = state.get(key)
    return value if isinstance(value, torch.Tensor) and value.dim() == ndim else None


_ARCHITECTURE_FACTS = ("width", "depth", "patch", "grid_tokens", "class_token", "distilled",
                       "hybrid", "layer_scale", "map_head", "reg_tokens", "no_embed_class",
                       "pre_norm", "patch_bias", "mlp_hidden", "swiglu", "qk_norm")


def matching_architectures(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Registered architectures whose shapes fit ``state`` (the head and representation layer
    aside), the ``vit_*`` names first."""
    facts = CheckpointFacts.of(state)
    found = [name for name in registry.list_models()
             if _same_architecture(facts, CheckpointFacts.of_config(registry.default_config(name)))]
    return sorted(found, key=lambda name: (not name.startswith("vit_"), name))


def _same_architecture(a: CheckpointFacts, b: CheckpointFacts) -> bool:
    return all(getattr(a, k) == getattr(b, k) for k in _ARCHITECTURE_FACTS)


def explain_mismatch(state: Mapping[str, torch.Tensor], model: nn.Module) -> list[str]:
    """Sentences naming each architectural difference between ``state`` and ``model``."""
    file, own = CheckpointFacts.of(state), CheckpointFacts.of(model.state_dict())
    lines = []
    if file.distilled and not own.distilled:
        lines.append("this is a DeiT checkpoint with a distillation token; the model has none")
    if own.distilled and not file.distilled:
        lines.append("the model has a distillation token; the checkpoint has none")
    if file.hybrid != own.hybrid:
        which = "the checkpoint" if file.hybrid else "the model"
        lines.append(f"{which} has a ResNet stem (an R+ViT hybrid), the other does not")
    if (file.width, file.depth) != (own.width, own.depth):
        lines.append(f"the checkpoint is {file.width} wide with {file.depth} blocks, the model "
                     f"{own.width} wide with {own.depth} blocks")
    if file.patch != own.patch and file.patch and own.patch:
        lines.append(f"the checkpoint has {file.patch[0]}x{file.patch[1]} patches, the model "
                     f"{own.patch[0]}x{own.patch[1]}")
    if file.no_embed_class != own.no_embed_class:
        lines.append(
            "the checkpoint's position table has no row for the class token (no_embed_class="
            "True: DeiT III, DINOv2 with registers in timm's layout); the model's has one"
            if file.no_embed_class else
            "the model's position table has no row for the class token (no_embed_class=True); "
            "the checkpoint's has one")
    elif file.grid_tokens != own.grid_tokens and file.grid_tokens and own.grid_tokens:
        lines.append(f"the checkpoint's position table covers {file.grid_tokens} patches, the "
                     f"model's {own.grid_tokens}: the image sizes differ")
    if file.reg_tokens != own.reg_tokens:
        lines.append(f"the checkpoint has {file.reg_tokens} register tokens, the model "
                     f"{own.reg_tokens}")
    if file.pre_norm != own.pre_norm:
        lines.append("the checkpoint " + ("has" if file.pre_norm else "has no")
                     + " norm before the blocks (norm_pre, CLIP's ln_pre), the model "
                     + ("has" if own.pre_norm else "has none"))
    if file.swiglu != own.swiglu or (file.mlp_hidden != own.mlp_hidden and not lines):
        lines.append(f"the checkpoint's MLP is {'SwiGLU' if file.swiglu else 'GELU'} with "
                     f"{file.mlp_hidden} hidden units, the model's "
                     f"{'SwiGLU' if own.swiglu else 'GELU'} with {own.mlp_hidden}")
    if file.class_token != own.class_token:
        lines.append("the checkpoint " + ("has" if file.class_token else "has no")
                     + " class token, the model " + ("has" if own.class_token else "has none"))
    if file.num_classes != own.num_classes:
        lines.append(f"the checkpoint's head has {file.num_classes} classes, the model's "
                     f"{own.num_classes}: pass num_classes={file.num_classes}, or "
                     "strict=False to keep the model's head")
    candidates = matching_architectures(state)
    if candidates and lines:
        lines.append("architectures that fit the checkpoint: " + ", ".join(candidates[:5]))
    return lines


# -- what a file says about itself ----------------------------------------------------------------
@dataclass
class Source:
    """A checkpoint read from disk: vitzoo-layout tensors, the config fields, and provenance."""

    state: dict[str, torch.Tensor]
    config: dict[str, Any]
    origin: str
    """``"jax"`` (Google/JAX numerics) or ``"pytorch"``."""
    metadata: dict[str, str] = field(default_factory=dict)
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    zero_head: bool = False
    source_format: str | None = None
    name: str = "the checkpoint"
    """The file, in messages."""

    @property
    def native(self) -> ViTConfig:
        """The config the tensors were saved for.

        Raises:
            CheckpointError: the file's config fields are not a valid ViTConfig.
        """
        if not isinstance(self.config, Mapping):
            raise CheckpointError(f"{self.name}: its config is a {type(self.config).__name__}, "
                                  "not a mapping of ViTConfig fields")
        try:
            return ViTConfig.from_dict(self.config)
        except (ConfigError, TypeError) as err:
            raise CheckpointError(f"{self.name} describes an invalid model: {err}") from err


class StateDict(dict[str, torch.Tensor]):
    """Tensors in vitzoo's names that remember what their reader left out on purpose, so the
    :class:`LoadReport` of whichever path loads them says so: ``set_aside``, keys of the file
    not converted (reported as ``dropped``; a CLIP file's text tower), and ``notes``."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], set_aside: Iterable[str] = (),
                 notes: Iterable[str] = ()) -> None:
        super().__init__(tensors)
        self.set_aside = list(set_aside)
        self.notes = list(notes)


def _origin(config: Mapping[str, Any]) -> str:
    return "jax" if config.get("gelu_approximate") == "tanh" else "pytorch"


def jax_source(path: Path, arrays: Mapping[str, Any], img_size: tuple[int, int] | None
               ) -> tuple[dict[str, Any], Source]:
    """A Google file's canonical tree and its :class:`Source` without tensors yet (config,
    numerics, provenance), from ``arrays`` (``io.open_npz``'s lazy ones: no data is read
    here but a big_vision position table's). :func:`iter_jax_state` gives the tensors.

    Raises:
        CheckpointError: the arrays are not a ViT vitzoo reads (naming ``path``).
    """
    prefix = big_vision.params_prefix(arrays)
    try:
        tree, notes = jax_npz.canonicalize(arrays)
        config = jax_npz.infer_config(tree, notes, img_size)
    except ValueError as err:  # CheckpointError too: say which file
        raise CheckpointError(f"{path}: {err}") from err
    metadata = {"source_format": "jax_npz", "source_layout": notes["layout"],
                "source_scanned": str(notes["scanned"]).lower(),
                "source_dtypes": ",".join(notes["dtypes"]), "source_prefix": prefix}
    ignored = notes.get("ignored") or {}
    if ignored:  # a two-tower file's text tower, temperature and bias; optimizer state
        metadata["source_ignored"] = ",".join(ignored)
    said = [f"{name} ({count} arrays) ignored: not part of the image tower"
            for name, count in ignored.items()]
    return tree, Source(StateDict({}, notes=said), config, "jax", metadata,
                        dict(GOOGLE_PREPROCESSING), source_format="jax_npz")


def iter_jax_state(path: Path, tree: dict[str, Any], progress: ProgressCallback | None = None,
                   ) -> Iterator[tuple[str, Any]]:
    """:func:`jax_npz.iter_vitzoo` (each array read as it is converted, then given up), its
    errors as a :class:`CheckpointError` naming ``path``."""
    try:
        yield from jax_npz.iter_vitzoo(tree, progress)
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path} is not a ViT checkpoint vitzoo can read: {err}") from err


def _read_jax(path: Path, img_size: tuple[int, int] | None,
              progress: ProgressCallback | None = None) -> Source:
    with io.open_npz(path) as arrays:
        tree, source = jax_source(path, arrays, img_size)
        source.zero_head = jax_npz.head_is_zero(tree)
        source.state.update((k, torch.from_numpy(contiguous(v)))
                            for k, v in iter_jax_state(path, tree, progress))
    return source


def _read_vitzoo(path: Path) -> Source:
    state, metadata = io.read_safetensors(path)
    config, pretrained = io.parse_vitzoo_metadata(metadata, str(path))
    return Source(state, config, _origin(config), metadata, pretrained,
                  source_format=io.FORMAT_NAME)


def _hub_weights(path: Path) -> dict[str, torch.Tensor]:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return io.load_state_dict(path / name)
    raise CheckpointError(f"{path} has no model.safetensors or pytorch_model.bin")


def _hf_preprocessing(path: Path, in_chans: int) -> dict[str, Any]:
    """Mean and std from a transformers ``preprocessor_config.json``, when there is one.

    Raises:
        CheckpointError: the file is not JSON, or its mean or std is not ``in_chans`` numbers.
    """
    file = path / "preprocessor_config.json"
    if not file.is_file():
        return {}
    pre = io.read_json(file)
    if "image_mean" not in pre or "image_std" not in pre:
        return {}
    try:
        return {"mean": json_fields.get_floats(pre, "image_mean", length=in_chans),
                "std": json_fields.get_floats(pre, "image_std", length=in_chans, positive=True)}
    except ValueError as err:
        raise CheckpointError(f"{file}: {err}") from err


def _read_hf_dir(path: Path, hub_config: dict[str, Any],
                 state: dict[str, torch.Tensor]) -> Source:
    config_file = path / "config.json"
    try:
        config = hf_transformers.config_fields(hub_config, state)
        names = hf_transformers.labels(hub_config)
        stored = json_fields.get_mapping(hub_config, "pretrained_cfg", {})
    except ValueError as err:
        raise CheckpointError(f"{config_file}: {err}") from err
    state, unmatched = _converted(hf_transformers.to_vitzoo, state, path, "hf_transformers")
    if unmatched:
        raise CheckpointError(f"{path} has weights with no vitzoo place: "
                              + ", ".join(unmatched[:8]))
    pretrained: dict[str, Any] = {**stored, **_hf_preprocessing(path, config["in_chans"])}
    if names and config["num_classes"] == len(names):
        pretrained["label_names"] = names
    return Source(state, config, "pytorch", {"source_format": "hf_transformers"}, pretrained,
                  source_format="hf_transformers", name=str(config_file))


def _read_open_clip_dir(path: Path) -> Source:
    """open_clip's ``save_for_hf`` layout: ``open_clip_config.json`` says the architecture, the
    activation (``quick_gelu``) and the preprocessing; the text tower is set aside."""
    config_file = path / open_clip.CONFIG_FILE
    hub = io.read_json(config_file)
    try:
        fields, trunk = open_clip.hub_config_fields(hub)
        preprocessing = open_clip.hub_preprocessing(hub)
    except ValueError as err:
        raise CheckpointError(f"{config_file}: {err}") from err
    weights = next(path / n for n in open_clip.WEIGHT_FILES if (path / n).is_file())
    raw = io.load_state_dict(weights)
    state, unmatched = _converted(open_clip.to_vitzoo, raw, weights, "open_clip")
    if unmatched:
        raise CheckpointError(f"{weights} has image-tower weights with no vitzoo place: "
                              + ", ".join(unmatched[:8]))
    config = fields
    if trunk is not None:  # a timm trunk: the registered architecture of that name
        try:
            config = {**registry.default_config(trunk).to_dict(), **fields}
        except VitzooError as err:
            raise CheckpointError(f"{config_file}: its image tower is the timm model {trunk!r}, "
                                  f"which is not a ViT vitzoo knows ({err})") from err
    return Source(StateDict(state, *open_clip.set_aside(raw, described=True)), config,
                  _origin(config), {"source_format": "open_clip"}, preprocessing,
                  source_format="open_clip", name=str(config_file))


def _timm_hub_config(config_file: Path, hub_config: Mapping[str, Any]) -> dict[str, Any]:
    """The ViTConfig fields a vitzoo or timm ``config.json`` names."""
    try:
        if "vitzoo_config" in hub_config:
            return dict(json_fields.get_mapping(hub_config, "vitzoo_config"))
        arch = json_fields.get_str(hub_config, "architecture")
        num_classes = json_fields.get_int(hub_config, "num_classes", None, minimum=0)
    except ValueError as err:
        raise CheckpointError(f"{config_file}: {err}") from err
    try:
        config = registry.default_config(arch).to_dict()
    except VitzooError as err:
        raise CheckpointError(f"{config_file}: its architecture {arch!r} is not one vitzoo "
                              f"builds ({err})") from err
    if num_classes is not None:
        config["num_classes"] = num_classes
    return config


def _read_hub_dir(path: Path) -> Source:
    if (path / open_clip.CONFIG_FILE).is_file() and any(
            (path / n).is_file() for n in open_clip.WEIGHT_FILES):
        # before config.json, which open_clip's and timm's hub repos also hold (transformers'
        # CLIP config; timm's, whose architecture name drops an OpenAI tower's QuickGELU)
        return _read_open_clip_dir(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(
            f"{path} is a directory without config.json; point at a checkpoint file or a "
            "hub-layout directory (config.json + model.safetensors)"
        )
    hub_config = io.read_json(config_file)
    if "model_type" in hub_config:  # Hugging Face transformers
        return _read_hf_dir(path, hub_config, _hub_weights(path))
    if not any(k in hub_config for k in ("vitzoo_config", "architecture")):
        raise CheckpointError(
            f"{config_file} names no architecture (no 'vitzoo_config', 'architecture' or "
            "'model_type')"
        )
    config = _timm_hub_config(config_file, hub_config)
    try:
        pretrained = dict(json_fields.get_mapping(hub_config, "pretrained_cfg", {}))
    except ValueError as err:
        raise CheckpointError(f"{config_file}: {err}") from err
    return Source(timm.to_vitzoo(_hub_weights(path)), config, _origin(config), {}, pretrained,
                  source_format="hub_dir", name=str(config_file))


def _converted(convert: Callable[[Mapping[str, torch.Tensor]], Any],
               state: Mapping[str, torch.Tensor], name: str | Path, fmt: str) -> Any:
    """An adapter's ``to_vitzoo(state)``, its errors on tensors of shapes no such model has
    (``ValueError``; a raw ``IndexError`` / ``RuntimeError`` from a tensor operation) as a
    :class:`CheckpointError` naming the file."""
    try:
        return convert(state)
    except (ValueError, IndexError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"{name} is not a {fmt} checkpoint vitzoo can read: "
                              f"{err}") from err


def read_state_dict(path: str | Path | Mapping[str, torch.Tensor], source_format: str = "auto",
                    ) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """A plain state dict (a file, or a dict) in vitzoo's names: ``(tensors, layout, keys with
    no vitzoo place)``; the layout is detected from the key names unless named."""
    name = "the state dict" if isinstance(path, Mapping) else str(path)
    raw = path if isinstance(path, Mapping) else io.load_state_dict(path)
    _check_tensors(raw, name)
    try:
        state, fmt, unmatched = convert_state_dict(raw, source_format)
    except VitzooError:
        raise
    except (ValueError, IndexError, KeyError, RuntimeError) as err:
        # a tensor of a shape no model of the layout has (a 1-D class token ...)
        raise CheckpointError(f"{name}: {err}") from err
    set_aside = getattr(STATE_DICT_FORMATS[fmt], "set_aside", None)
    if set_aside is not None:  # keys the layout leaves out on purpose (CLIP's text tower)
        state = StateDict(state, *set_aside(raw))
    return state, fmt, unmatched


def _read_state_dict(path: Path, source_format: str) -> Source:
    """A plain state dict (timm, DeiT, torchvision, ViT-pytorch): the architecture is the
    registered one whose shapes fit; heads and image size come from the tensors."""
    state, fmt, unmatched = read_state_dict(path, source_format)
    if unmatched:
        raise CheckpointError(f"{path} ({fmt} layout) has arrays with no vitzoo place: "
                              + ", ".join(unmatched[:8]))
    described = _described_by_adapter(path, fmt, state)
    if described is not None:
        return described
    candidates = matching_architectures(state)
    facts = CheckpointFacts.of(state)
    if not candidates:
        raise CheckpointError(
            f"{path} is a plain {fmt} state dict and no registered architecture has its shapes "
            f"(width {facts.width}, {facts.depth} blocks, {facts.grid_tokens} patches): build "
            "the model with vitzoo.create_model(NAME, ...) or a ViTConfig and call "
            "vitzoo.load_checkpoint(model, path)"
        )
    config = registry.default_config(candidates[0]).to_dict()
    config["num_classes"] = facts.num_classes
    pre_logits = _of_rank(state, "pre_logits.fc.weight", 2)
    if pre_logits is not None:
        config["representation_size"] = int(pre_logits.shape[0])
    logger.info("%s: %s layout, built as %s", path, fmt, candidates[0])
    return Source(state, config, "pytorch", {"source_format": fmt},
                  {"architecture": candidates[0]}, source_format=fmt)


def _described_by_adapter(path: Path, fmt: str, state: dict[str, torch.Tensor]) -> Source | None:
    """A release whose adapter reads the architecture off the tensors (DINOv2, CLIP ...):
    the adapter's ``config_fields(state)``, ``ORIGIN`` and ``preprocessing(state)``."""
    module = STATE_DICT_FORMATS.get(fmt)
    describe = getattr(module, "config_fields", None)
    if describe is None or fmt == "hf_transformers":  # whose fields are in its config.json
        return None
    preprocessing = getattr(module, "preprocessing", None)
    try:
        fields = describe(state)
        if fields is None:  # the tensors do not say (a timm trunk): the registered one that fits
            return None
        config = ViTConfig(**fields).to_dict()
        pretrained = dict(preprocessing(state)) if preprocessing is not None else {}
    except (ValueError, IndexError, KeyError) as err:  # ConfigError is a ValueError
        raise CheckpointError(f"{path} ({fmt} layout): {err}") from err
    logger.info("%s: %s layout, architecture read off the tensors", path, fmt)
    return Source(state, config, getattr(module, "ORIGIN", "pytorch"), {"source_format": fmt},
                  pretrained, source_format=fmt)


SOURCE_FORMATS = ("auto", "jax_npz", "vitzoo", "hub_dir", "state_dict", *STATE_DICT_FORMATS)


def read_source(path: str | Path, *, source_format: str = "auto",
                img_size: tuple[int, int] | None = None,
                progress: ProgressCallback | None = None) -> Source:
    """Read a self-describing checkpoint into vitzoo's layout.

    Args:
        path: a Google ``.npz``, a vitzoo ``.safetensors``, a hub-layout directory, or a plain
            state dict of a registered architecture.
        source_format: ``"auto"`` (from the content), ``"jax_npz"``, ``"vitzoo"``,
            ``"hub_dir"``, ``"state_dict"`` or a state-dict layout (``"timm"`` ...).
        img_size: the image size of a Google file with no position table (sin-cos).
        progress: called with ``(done, total)`` arrays while converting.
    """
    path = Path(path)
    if source_format not in SOURCE_FORMATS:
        raise CheckpointError(f"unknown source_format {source_format!r}: use "
                              + ", ".join(map(repr, SOURCE_FORMATS)))
    fmt = source_format
    if fmt == "auto":
        fmt = io.detect_format(path)
        fmt = {"safetensors": "state_dict", "pickle": "state_dict"}.get(fmt, fmt)
    if fmt == "jax_npz":
        source = _read_jax(path, img_size, progress)
    elif fmt == "vitzoo":
        source = _read_vitzoo(path)
    elif fmt == "hub_dir":
        source = _read_hub_dir(path)
    else:
        source = _read_state_dict(path, "auto" if fmt == "state_dict" else fmt)
    if source.name == Source.name:  # a hub directory names its config file itself
        source.name = str(path)
    return source


# -- fitting a state dict to a config -------------------------------------------------------------
def fit_state(state: Mapping[str, torch.Tensor], native: ViTConfig, cfg: ViTConfig, *,
              resample: str, antialias: bool = False,
              report: LoadReport) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Adapt a checkpoint saved for ``native`` to a model built with ``cfg``.

    A different class count or representation layer drops the head (the model keeps its own,
    zero-initialised for JAX-origin weights, as Google fine-tunes); a model without the
    representation layer drops ``pre_logits`` (Google's ``load_pretrained`` rule); leaving
    MAP pooling drops ``attn_pool``; another grid resamples the position embeddings, prefix
    rows kept. What was done goes into ``report``.

    Returns:
        The adapted tensors and the top-level parts (``head``, ``pre_logits`` ...) the model
        must initialise itself.
    """
    state = dict(state)
    drop_head = (cfg.num_classes != native.num_classes
                 or cfg.representation_size != native.representation_size)
    drop_pre_logits = cfg.representation_size != native.representation_size
    drop_pool = cfg.global_pool != native.global_pool and native.global_pool == "map"
    fresh = ({"head", "head_dist"} if drop_head else set()) | (
        {"pre_logits"} if drop_pre_logits else set()) | ({"attn_pool"} if drop_pool else set())
    for key in list(state):
        if key.split(".")[0] in fresh:
            del state[key]
            report.dropped.append(key)
    if "pos_embed" in state and cfg.grid_size != native.grid_size:
        state["pos_embed"] = resample_pos_embed(
            state["pos_embed"], cfg.grid_size, old_grid=native.grid_size,
            num_prefix_tokens=native.num_pos_prefix_tokens, mode=resample, antialias=antialias)
        report.resampled["pos_embed"] = (
            f"{native.grid_size[0]}x{native.grid_size[1]} -> "
            f"{cfg.grid_size[0]}x{cfg.grid_size[1]}, {resample}"
            + (" with antialias" if antialias and resample != "scipy" else ""))
    return state, fresh


_INPUT_CONVS = ("patch_embed.proj.weight", "patch_embed.backbone.stem.conv.weight",
                "patch_embed.backbone.conv.weight")


def adapt_input_channels(state: dict[str, torch.Tensor], own: Mapping[str, torch.Tensor],
                         report: LoadReport) -> None:
    """3-channel input kernels of ``state`` adapted in place to the model's channel count."""
    for key in _INPUT_CONVS:
        if key == "patch_embed.proj.weight" and "patch_embed.backbone.stem.conv.weight" in own:
            continue  # a hybrid's patch projection sees features, not images
        if key not in state or key not in own:
            continue
        src, dst = state[key].shape, own[key].shape
        if (src != dst and len(src) == len(dst) == 4 and src[1] == 3
                and (src[0], *src[2:]) == (dst[0], *dst[2:])):
            state[key] = adapt_input_conv(state[key], dst[1])
            how = "summed" if dst[1] == 1 else "repeated and scaled by 3/" + str(dst[1])
            report.reshaped[key] = f"3 -> {dst[1]} input channels, {how}"


def compare_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> LoadReport:
    """The differences between a model's state dict and ``state``, without loading anything."""
    return _differences(model.state_dict(), state)


def _differences(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
                 ) -> LoadReport:
    report = LoadReport(
        missing=[k for k in own if k not in state],
        unexpected=[k for k in state if k not in own],
    )
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            report.mismatched[key] = (tuple(value.shape), tuple(own[key].shape))
    return report


# -- THE build-and-load path ----------------------------------------------------------------------
def _mismatch(name: str, model: nn.Module, state: Mapping[str, torch.Tensor],
              report: LoadReport, self_describing: bool) -> CheckpointMismatchError:
    reasons = "".join(f"\n- {line}" for line in explain_mismatch(state, model))
    layout = f" ({report.source_format} layout)" if report.source_format else ""
    if self_describing:
        return CheckpointMismatchError(
            f"{name}{layout} does not fit the model it describes:{reasons}\n{report.describe()}\n"
            "The file's tensors disagree with its own config: it is damaged or was edited; "
            "get it again")
    return CheckpointMismatchError(
        f"{name}{layout} does not fit {type(model).__name__}:{reasons}\n{report.describe()}\n"
        "Create the architecture the checkpoint was saved from, or pass strict=False "
        "(vitzoo.load_checkpoint(model, path, strict=False)) to load the keys that fit.")


_DESCRIBED_FACTS = ("width", "depth", "patch", "hybrid", "class_token", "distilled",
                    "reg_tokens", "mlp_hidden", "swiglu")


def _check_described(state: Mapping[str, torch.Tensor], native: ViTConfig, name: str) -> None:
    """Refuse, before anything is built, a file whose tensors are not the model its own config
    describes (a damaged or hostile config could otherwise ask for a model of any size)."""
    file, described = CheckpointFacts.of(state), CheckpointFacts.of_config(native)
    differ = [f"{fact}: {getattr(file, fact)!r} in the tensors, {getattr(described, fact)!r} "
              "in its config" for fact in _DESCRIBED_FACTS
              if getattr(file, fact) != getattr(described, fact)]
    if differ:
        raise CheckpointMismatchError(
            f"{name} does not fit the model it describes ({'; '.join(differ)}). The file's "
            "tensors disagree with its own config: it is damaged or was edited; get it again")


def _check_tensors(state: Mapping[str, Any], name: str) -> None:
    """Every key a string and every value a tensor."""
    bad = [repr(k) for k, v in state.items() if not isinstance(k, str)
           or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{name} is not a state dict of named tensors: "
                              f"{', '.join(bad[:8])} {'is' if len(bad) == 1 else 'are'} not a "
                              "string key with a tensor value")


def _unloadable(value: torch.Tensor, own: torch.Tensor) -> str | None:
    """Why ``value`` cannot be the model's ``own`` tensor, or None."""
    if value.is_meta and not own.is_meta:  # (into a meta model, only shapes are compared)
        return "meta (no data)"
    if value.is_quantized:
        return f"quantized ({value.dtype})"
    if value.layout != torch.strided or value.is_nested:
        return f"{value.layout} layout"
    if value.dtype != own.dtype and not (value.is_floating_point() and own.is_floating_point()):
        return str(value.dtype).removeprefix("torch.")
    return None


def fit_dtypes(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor],
               report: LoadReport, name: str) -> dict[str, torch.Tensor]:
    """The tensors of ``state`` that the model has, in the model's dtypes: other floating
    types (float16, bfloat16, float64 ...) are converted, with a note in ``report``.

    Raises:
        CheckpointError: a tensor the model would load is integer, bool, complex, sparse,
            quantized or on the meta device (unless the model is too; the keys are named).
    """
    refused: dict[str, list[str]] = {}
    for key, value in state.items():
        why = _unloadable(value, own[key]) if key in own else None
        if why is not None:
            refused.setdefault(why, []).append(key)
    if refused:
        kinds = "; ".join(f"{why}: {_group_keys(keys)}" for why, keys in refused.items())
        raise CheckpointError(
            f"{name} holds tensors a model cannot compute with ({kinds}). vitzoo loads dense "
            "floating-point weights (float32, float16, bfloat16, float64); the file is damaged "
            "or holds something other than model weights")
    out = dict(state)
    converted: Counter[tuple[torch.dtype, torch.dtype]] = Counter()
    for key, value in state.items():
        if key in own and value.dtype != own[key].dtype:
            out[key] = value.to(own[key].dtype)
            converted[(value.dtype, own[key].dtype)] += 1
    for (src, dst), count in converted.items():
        report.notes.append(f"{count} tensor{'s' if count > 1 else ''} converted from "
                            f"{str(src).removeprefix('torch.')} to "
                            f"{str(dst).removeprefix('torch.')}")
    return out


def _all_finite(value: torch.Tensor) -> bool:
    """Whether every element is finite. A NaN or infinity makes the sum NaN or infinite, so a
    finite sum (one pass, no allocation) answers at once; only a non-finite one (which finite
    values can reach by overflow) is checked element by element."""
    return bool(torch.isfinite(value.sum())) or bool(torch.isfinite(value).all())


def warn_non_finite(state: Mapping[str, torch.Tensor], report: LoadReport, name: str) -> None:
    """Warn (:class:`~vitzoo.errors.NonFiniteWeightsWarning`) when weights hold NaN or inf."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not v.is_meta
           and not _all_finite(v)]
    if bad:
        what = f"{len(bad)} tensor{'s' if len(bad) > 1 else ''} with NaN or infinite values"
        report.notes.append(f"{what}: {_group_keys(bad)}")
        warnings.warn(f"{name} has {what} ({_group_keys(bad)}); they were loaded, but the "
                      "model's outputs will not be finite: the file is damaged, or the "
                      "training diverged", NonFiniteWeightsWarning, stacklevel=3)


def load_state(state: Mapping[str, torch.Tensor], *, cfg: ViTConfig | None = None,
               native: ViTConfig | None = None, model: nn.Module | None = None,
               strict: bool = True, resample: str = "bicubic", antialias: bool = False,
               name: str = "the state dict", source_format: str | None = None,
               unmatched: Sequence[str] = (),
               model_cls: type[VisionTransformer] | None = None) -> tuple[nn.Module, LoadReport]:
    """Fit a vitzoo-layout state dict to a model, build it (or take ``model``) and load it.

    Args:
        state: the tensors, in vitzoo's names.
        cfg: the config to build (default: ``model.cfg``).
        native: the config ``state`` was saved for, when the file says (a self-describing
            checkpoint): a different class count then replaces the head, another grid
            resamples the position embeddings (``resample``, ``antialias``). None: a plain
            state dict, loaded as it is.
        model: load into this model in place (its parameters keep their identity, device and
            dtype) instead of building one.
        strict: raise when any key is missing, unexpected or of a different shape (the model
            is left unchanged); otherwise load what fits and report the rest.
        name: the checkpoint's name in messages.
        source_format: the layout the tensors were read in, for the report.
        unmatched: keys of the file that no adapter rule placed (reported as unexpected).
        model_cls: the class to build (default: the one ``cfg`` implies).

    Returns:
        ``(model, report)``. A model built here is in eval mode, was never randomly
        initialised where it was loaded, has its new parts (a replaced head, parts missing
        with ``strict=False``) initialised as ``cfg.weight_init`` says, and carries the report
        as ``model.load_report``.

    Raises:
        CheckpointMismatchError: with ``strict``, the checkpoint does not fit; the message
            explains the difference in words and names architectures that fit.
    """
    target = cfg if cfg is not None else getattr(model, "cfg", None)
    if model is None and target is None:
        raise TypeError("load_state needs cfg or model")
    report = LoadReport(source_format=source_format,
                        dropped=list(getattr(state, "set_aside", ())),
                        notes=list(getattr(state, "notes", ())))
    _check_tensors(state, name)
    fresh: set[str] = set()
    if native is not None:
        _check_described(state, native, name)
    built = model is None
    if model is None:
        assert target is not None  # (checked above: without a model, cfg is given)
        with skip_init():
            model = build_model(target, model_cls)
    own = model.state_dict()
    state = fit_dtypes(state, own, report, name)
    if native is not None and target is not None:
        state, fresh = fit_state(state, native, target, resample=resample, antialias=antialias,
                                 report=report)
    adapt_input_channels(state, own, report)
    diff = _differences(own, state)
    report.missing = [k for k in diff.missing if k.split(".")[0] not in fresh]
    report.unexpected = diff.unexpected + list(unmatched)
    report.mismatched = diff.mismatched
    if strict and not report.ok:
        raise _mismatch(name, model, state, report, self_describing=native is not None)
    fitting = {k: v for k, v in state.items()
               if k not in report.mismatched and k not in report.unexpected}
    warn_non_finite(fitting, report, name)
    model.load_state_dict(fitting, strict=False, assign=built)
    if built:
        uninitialised = fresh | {k.split(".")[0] for k in report.missing}
        if uninitialised:  # (a built model: build_model made it above)
            cast(VisionTransformer, model).init_weights(only=uninitialised)
        model.eval()
        model.load_report = report  # type: ignore[assignment]  # torch stub: only Tensor | Module
        if report.dropped or report.resampled or report.reshaped or report.notes:
            logger.info("loaded %s: %s", name, report.describe())
    return model, report


def load_checkpoint(model: nn.Module, path: str | Path | Mapping[str, torch.Tensor], *,
                    strict: bool = True, source_format: str = "auto") -> LoadReport:
    """Load a state dict written by vitzoo, timm, DeiT / DeiT III, DINOv2, OpenAI's CLIP or
    open_clip, Hugging Face transformers, torchvision or the original PyTorch port of Google's
    ViT into ``model``.

    The layout is detected from the key names (or named with ``source_format``). 3-channel
    weights load into models with other ``in_chans`` (summed for 1 channel, otherwise repeated
    and scaled by ``3 / in_chans``).

    Args:
        model: the model to load into (changed in place).
        path: a ``.safetensors`` / ``.pth`` / ``.bin`` file, or a state dict.
        strict: raise when any key is missing, unexpected or of a different shape; with
            ``strict=False`` the keys that fit are loaded and the rest reported.
        source_format: ``"auto"`` or a layout: ``"timm"``, ``"dinov2"``, ``"deit3"``,
            ``"open_clip"``, ``"hf_transformers"``, ``"torchvision"``, ``"vit_pytorch"``.

    Returns:
        The :class:`LoadReport`.

    Raises:
        CheckpointMismatchError: with ``strict=True``, when the checkpoint does not fit; the
            message explains the difference in words and names architectures that fit. The
            model is left unchanged.
    """
    name = "the state dict" if isinstance(path, Mapping) else str(path)
    state, fmt, unmatched = read_state_dict(path, source_format)
    _, report = load_state(state, model=model, strict=strict, name=name, source_format=fmt,
                           unmatched=unmatched)
    return report
