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
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch

from ._utils import skip_init, suggestion
from .config import ViTConfig
from .errors import DuplicateModelError, UnknownModelError, UnknownTagError
from .models import VisionTransformer, build_model
from .models.archs import ARCHS, Arch
from .pretrained import tags_for

__all__ = [
    "default_config",
    "get_arch",
    "get_builder",
    "is_model",
    "list_aliases",
    "list_models",
    "list_pretrained",
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
    for alias in arch.aliases:
        register_alias(alias, arch.name)


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
    return fn


def register_alias(alias: str, arch: str) -> None:
    """Make ``alias`` resolve to the registered architecture ``arch``."""
    if arch not in _BUILDERS:
        raise UnknownModelError(f"cannot alias {alias!r} to unregistered model {arch!r}")
    if alias in _BUILDERS or _ALIASES.get(alias, arch) != arch:
        raise DuplicateModelError(f"alias {alias!r} is already registered")
    _ALIASES[alias] = arch


def _split_tag(name: str) -> tuple[str, str | None]:
    base, dot, tag = name.partition(".")
    return base, (tag if dot else None)


def _resolve_arch(base: str) -> str | None:
    if base in _BUILDERS:
        return base
    if base in _ALIASES:
        return _ALIASES[base]
    lowered = base.lower()
    for table in (_BUILDERS, _ALIASES):
        for key in table:
            if key.lower() == lowered:
                return key if table is _BUILDERS else _ALIASES[key]
    return None


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


def list_models(pattern: str | Iterable[str] = "*", *, pretrained: bool = False) -> list[str]:
    """Registered architecture names matching a wildcard pattern (or any of several), sorted.

    Args:
        pattern: shell-style wildcard(s), e.g. ``"vit_*_patch16_*"``.
        pretrained: only architectures that have pretrained tags.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    names = [n for n in _BUILDERS if _match(n, patterns)]
    if pretrained:
        names = [n for n in names if tags_for(n)]
    return sorted(names)


def list_pretrained(pattern: str | Iterable[str] = "*") -> list[str]:
    """Every ``arch.tag`` whose full name or architecture matches the pattern(s).

    Sorted by architecture, each architecture's default tag first.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    found = []
    for arch in sorted(_BUILDERS):
        for tag in tags_for(arch):
            full = f"{arch}.{tag}"
            if _match(full, patterns) or _match(arch, patterns):
                found.append(full)
    return found


def list_aliases(arch: str | None = None) -> dict[str, str]:
    """Alias → architecture, optionally only the aliases of one architecture."""
    return {a: t for a, t in sorted(_ALIASES.items()) if arch is None or t == arch}


def is_model(name: str) -> bool:
    """Whether ``name`` is an architecture, an alias, or either with a known tag."""
    try:
        resolve_name(name)
    except (UnknownModelError, UnknownTagError):
        return False
    return True


for _arch in ARCHS:
    _register_arch(_arch)
