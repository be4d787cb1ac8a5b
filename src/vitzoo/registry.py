"""The model registry: architecture names, aliases and their builders.

Architectures use timm's names (``vit_base_patch16_224``); aliases are short names
(``vit_b16``) and the original release's names (``ViT-B_16``). A name may carry a pretrained
tag after a dot (``vit_base_patch16_224.augreg2_in21k_ft_in1k``).
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from ._utils import suggestion
from .errors import DuplicateModelError, UnknownModelError, UnknownTagError
from .pretrained import tags_for

if TYPE_CHECKING:
    from .config import ViTConfig
    from .models.vision_transformer import VisionTransformer

__all__ = [
    "get_builder",
    "is_model",
    "list_aliases",
    "list_models",
    "list_pretrained",
    "register_alias",
    "register_model",
    "resolve_name",
]

Builder = Callable[..., "VisionTransformer"]
F = TypeVar("F", bound=Callable[..., Any])

_BUILDERS: dict[str, Builder] = {}
_ALIASES: dict[str, str] = {}


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
    name = fn.__name__
    if name in _BUILDERS or name in _ALIASES:
        raise DuplicateModelError(
            f"model {name!r} is already registered; give your builder another name"
        )
    _BUILDERS[name] = fn
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
    """The builder registered for an architecture name (aliases resolved)."""
    resolved, _ = resolve_name(arch)
    return _BUILDERS[resolved]


@functools.cache
def _default_config(builder: Builder) -> ViTConfig:
    from ._utils import skip_init

    with torch.device("meta"), skip_init():
        return builder().cfg


def default_config(arch: str) -> ViTConfig:
    """The config an architecture's builder makes with no overrides (built on the meta device,
    without initialisation, and remembered)."""
    return _default_config(get_builder(arch))


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
