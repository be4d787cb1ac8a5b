"""The model registry: architecture names -> configs, aliases, and their builders.

Architectures use timm's names (``vit_base_patch16_224``); aliases are short names
(``vit_b16``) and the original release's names (``ViT-B_16``). A name may carry a pretrained
tag after a dot (``vit_base_patch16_224.augreg2_in21k_ft_in1k``).

The built-in architectures are data (:mod:`vitzoo.models.archs`): each name stands for a
:class:`vitzoo.ViTConfig`, and its builder is derived from it. User functions registered with
:func:`register_model` work the same way; their config is read by building them once on the
meta device.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch

from ._utils import skip_init, suggestion
from .config import ViTConfig
from .errors import DuplicateModelError, UnknownModelError, UnknownOverrideError, UnknownTagError
from .models import VisionTransformer, build_model
from .models.archs import ARCHS, MODULES, Arch
from .pretrained import PretrainedCfg, build_pretrained_cfg, default_tag, get_entry, tags_for

__all__ = [
    "default_config",
    "get_arch",
    "get_builder",
    "get_pretrained_cfg",
    "get_pretrained_cfg_value",
    "is_model",
    "list_aliases",
    "list_models",
    "list_pretrained",
    "natural_key",
    "register_alias",
    "register_config",
    "register_model",
    "resolve_name",
]

Builder = Callable[..., VisionTransformer]
F = TypeVar("F", bound=Callable[..., Any])

_BUILDERS: dict[str, Builder] = {}
_ARCHS: dict[str, Arch] = {}
_ALIASES: dict[str, str] = {}
_TAG_ALIASES: dict[str, str] = {}
"""alias -> the tag it names (an alias of a weight set, ``siglip_so400m_patch14_384``)."""
_MODULES: dict[str, str] = {}
"""name -> timm's module name of its family (``list_models(module=...)``)."""


def _check_new(name: str) -> None:
    if name in _BUILDERS or name in _ALIASES:
        raise DuplicateModelError(
            f"model {name!r} is already registered; give your builder another name"
        )


def _derived_builder(arch: Arch) -> Builder:
    def builder(**overrides: Any) -> VisionTransformer:
        return build_model(arch.cfg.replace(**overrides), arch.model_cls)

    builder.__name__ = builder.__qualname__ = arch.name
    builder.__module__ = __name__
    builder.__doc__ = (
        f"{arch.summary}\n\nArgs:\n    **overrides: any ViTConfig field, e.g. num_classes=10, "
        "img_size=384, drop_path_rate=0.1.\n"
    )
    return builder


def register_config(name: str, cfg: ViTConfig, *, summary: str = "",
                    aliases: Iterable[str] = (),
                    model_cls: type[VisionTransformer] | None = None) -> None:
    """Register an architecture as data: ``name`` builds ``cfg`` (plus keyword overrides).

    Args:
        name: the architecture name.
        cfg: its configuration.
        summary: one line for the builder's docstring and ``vitzoo info``.
        aliases: other names that resolve to it.
        model_cls: the class to build (default: the one ``cfg`` implies).

    Raises:
        DuplicateModelError: the name or an alias is already registered.
    """
    _register_arch(Arch(name, cfg, summary, tuple(aliases), model_cls))


def _register_arch(arch: Arch) -> None:
    _check_new(arch.name)
    _BUILDERS[arch.name] = _derived_builder(arch)
    _ARCHS[arch.name] = arch
    _MODULES[arch.name] = MODULES.get(arch.name, "")
    for alias in arch.aliases:
        register_alias(alias, arch.name)
    for alias, tag in arch.tag_aliases:
        register_alias(alias, arch.name, tag=tag)


def register_model(fn: F) -> F:
    """Register a builder under its function name (a decorator).

    The builder takes keyword config overrides and returns a model::

        @vitzoo.register_model
        def vit_small_patch16_96(**overrides):
            return vitzoo.VisionTransformer(
                vitzoo.SIZES["S"].replace(patch_size=16, img_size=96, **overrides))

    Raises:
        DuplicateModelError: the name is already an architecture or an alias.
    """
    _check_new(fn.__name__)
    _BUILDERS[fn.__name__] = fn
    _MODULES[fn.__name__] = fn.__module__.split(".")[-1]
    return fn


def register_alias(alias: str, arch: str, *, tag: str | None = None) -> None:
    """Make ``alias`` resolve to the registered architecture ``arch`` (with ``tag``: to its
    weights ``arch.tag``, the tag used when the name gives none)."""
    if arch not in _BUILDERS:
        raise UnknownModelError(f"cannot alias {alias!r} to unregistered model {arch!r}")
    if alias in _BUILDERS or _ALIASES.get(alias, arch) != arch:
        raise DuplicateModelError(f"alias {alias!r} is already registered")
    if tag is not None and tag not in tags_for(arch):
        raise UnknownTagError(f"cannot alias {alias!r} to {arch}.{tag}: no such tag")
    _ALIASES[alias] = arch
    if tag is not None:
        _TAG_ALIASES[alias] = tag


def _split_tag(name: str) -> tuple[str, str | None]:
    base, dot, tag = name.partition(".")
    return base, (tag if dot else None)


def _registered_name(base: str) -> str | None:
    """The architecture or alias ``base`` names (exactly, else ignoring case)."""
    if base in _BUILDERS or base in _ALIASES:
        return base
    lowered = base.lower()
    return next((key for table in (_BUILDERS, _ALIASES) for key in table
                 if key.lower() == lowered), None)


def _resolve_arch(base: str) -> str | None:
    key = _registered_name(base)
    return _ALIASES.get(key, key) if key is not None else None


def resolve_name(name: str) -> tuple[str, str | None]:
    """Split ``name`` into ``(architecture, tag)``, resolving aliases.

    Raises:
        UnknownModelError: not an architecture or alias (the message lists close matches).
        UnknownTagError: the tag is not known for the architecture (lists the known tags).
    """
    if not isinstance(name, str) or not name:
        raise UnknownModelError(f"a model name must be a non-empty string, got {name!r}")
    base, tag = _split_tag(name)
    arch = _resolve_arch(base)
    if tag is None and arch is not None:
        tag = _TAG_ALIASES.get(_registered_name(base) or base)
    if arch is None:
        hint = suggestion(base, [*_BUILDERS, *_ALIASES])
        raise UnknownModelError(
            f"unknown model {base!r}.{hint} See vitzoo.list_models() or `vitzoo list`."
        )
    if tag is not None and tag not in tags_for(arch):
        known = tags_for(arch)
        listed = ", ".join(known) if known else "none"
        raise UnknownTagError(
            f"unknown tag {tag!r} for {arch}.{suggestion(tag, known)} Known tags: {listed}."
        )
    return arch, tag


def get_builder(arch: str) -> Builder:
    """The builder of an architecture name (aliases resolved): ``builder(**overrides)``."""
    resolved, _ = resolve_name(arch)
    return _BUILDERS[resolved]


def get_arch(arch: str) -> Arch | None:
    """The registered :class:`~vitzoo.models.archs.Arch` of an architecture (aliases
    resolved), or None for a user builder function."""
    resolved, _ = resolve_name(arch)
    return _ARCHS.get(resolved)


@functools.cache
def _built_config(builder: Builder) -> ViTConfig:
    with torch.device("meta"), skip_init():
        return builder().cfg


def default_config(arch: str) -> ViTConfig:
    """The config an architecture stands for (a lookup; a user builder function is built
    once on the meta device, without initialisation, and remembered)."""
    resolved, _ = resolve_name(arch)
    if resolved in _ARCHS:
        return _ARCHS[resolved].cfg
    return _built_config(_BUILDERS[resolved])


def build(arch: str, **overrides: Any) -> VisionTransformer:
    """Build a registered architecture with config overrides."""
    return get_builder(arch)(**overrides)


def _match(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _str_list(value: str | Iterable[str] | None) -> list[str]:
    """timm's normalisation: ``""`` / None is no filter, a str one, an iterable several."""
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def _with_tag_patterns(patterns: list[str]) -> list[str]:
    """A pattern without a tag part also matches the tagged names (timm's rule)."""
    return [q for p in patterns for q in ([p] if "." in p else [p + ".*", p])]


def natural_key(name: str) -> list[int | str]:
    """timm's sort order of names: digit runs compare as numbers (``patch8`` before
    ``patch16``), the rest case-insensitively."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def _has_weights(name: str) -> bool:
    arch, tag = _split_tag(name)
    entry = get_entry(arch, tag)
    return entry is not None and entry.has_weights


def list_models(filter: str | Iterable[str] = "", module: str | Iterable[str] = "",  # noqa: A002
                pretrained: bool = False, exclude_filters: str | Iterable[str] = "",
                name_matches_cfg: bool = False, include_tags: bool | None = None, *,
                pattern: str | Iterable[str] | None = None) -> list[str]:
    """Registered model names in timm's (natural) order: timm's ``list_models``, with timm's
    arguments.

    Args:
        filter: shell-style wildcard(s) a name must match, e.g. ``"vit_*_patch16_*"``
            (``""``: every name). Without a tag part a pattern also matches the tagged names.
        module: only the names of these families, by timm's module names
            (``"vision_transformer"``, ``"deit"``, ``"vision_transformer_hybrid"``; a user
            builder's is the last part of its module's name).
        pretrained: only names whose weights can be downloaded (an architecture counts by its
            default tag).
        exclude_filters: wildcard(s) removing names again.
        name_matches_cfg: only names with a pretrained cfg of their own (architectures with
            tags, and ``arch.tag`` names).
        include_tags: list ``arch.tag`` names instead of architectures; None means the value
            of ``pretrained`` (timm's rule).
        pattern: vitzoo's earlier name of ``filter``.
    """
    includes = _str_list(filter if pattern is None else pattern)
    excludes = _str_list(exclude_filters)
    modules = _str_list(module)
    include_tags = pretrained if include_tags is None else include_tags
    names = {n for n in _BUILDERS if not modules or _MODULES.get(n, "") in modules}
    if include_tags:
        names = {f"{n}.{t}" for n in names for t in tags_for(n)} | {
            n for n in names if not tags_for(n)}
        includes, excludes = _with_tag_patterns(includes), _with_tag_patterns(excludes)
    if includes:
        names = {n for n in names if _match(n, includes)}
    if excludes:
        names = {n for n in names if not _match(n, excludes)}
    if pretrained:
        names = {n for n in names if _has_weights(n)}
    if name_matches_cfg:
        names = {n for n in names if tags_for(_split_tag(n)[0])}
    return sorted(names, key=natural_key)


def list_pretrained(filter: str | Iterable[str] = "",  # noqa: A002
                    exclude_filters: str | Iterable[str] = "", *,
                    pattern: str | Iterable[str] | None = None) -> list[str]:
    """Every ``arch.tag`` with weights whose full name or architecture matches ``filter``
    (``""``: all; ``pattern`` is vitzoo's earlier name) and no ``exclude_filters`` pattern;
    timm's ``list_pretrained``.

    Sorted by architecture (timm's natural order), each architecture's default tag first.
    """
    includes = _str_list(filter if pattern is None else pattern)
    excludes = _with_tag_patterns(_str_list(exclude_filters))
    found = []
    for arch in sorted(_BUILDERS, key=natural_key):
        for tag in tags_for(arch):
            full = f"{arch}.{tag}"
            if includes and not (_match(full, includes) or _match(arch, includes)):
                continue
            if _match(full, excludes) or not _has_weights(full):
                continue
            found.append(full)
    return found


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    """The pretrained cfg of ``arch`` (its default tag) or ``arch.tag``, without building the
    model: what ``create_model(name).pretrained_cfg`` holds (timm's ``get_pretrained_cfg``).

    Raises:
        UnknownModelError: the name is not registered.
        UnknownTagError: the tag is not known for the architecture.
    """
    arch, tag = resolve_name(name)
    tag = tag or default_tag(arch)
    cfg = default_config(arch)
    entry = get_entry(arch, tag)
    if entry is not None:
        cfg = cfg.replace(num_classes=entry.num_classes)
    return build_pretrained_cfg(cfg, arch=arch, tag=tag, entry=entry)


def get_pretrained_cfg_value(name: str, key: str) -> Any:
    """One key of :func:`get_pretrained_cfg` (timm's ``get_pretrained_cfg_value``).

    Raises:
        UnknownOverrideError: ``key`` is not a pretrained-cfg key.
    """
    cfg = get_pretrained_cfg(name).to_dict()
    if key not in cfg:
        raise UnknownOverrideError(f"unknown pretrained_cfg key {key!r}."
                                   f"{suggestion(key, cfg)} Valid keys: {', '.join(cfg)}.")
    return cfg[key]


def list_aliases(arch: str | None = None) -> dict[str, str]:
    """Alias → what it names: an architecture, or ``arch.tag`` for an alias of a weight set
    (``siglip_so400m_patch14_384``); optionally only the aliases of one architecture."""
    return {a: t + (f".{_TAG_ALIASES[a]}" if a in _TAG_ALIASES else "")
            for a, t in sorted(_ALIASES.items()) if arch is None or t == arch}


def is_model(name: str) -> bool:
    """Whether ``name`` is an architecture, an alias, or either with a known tag."""
    try:
        resolve_name(name)
    except (UnknownModelError, UnknownTagError):
        return False
    return True


for _arch in ARCHS:
    _register_arch(_arch)
