"""Typed reads of the fields of a parsed JSON side file (``config.json``,
``preprocessor_config.json``, ``open_clip_config.json``).

JSON says little about types: a number may come as a string, a bool or a float, a list where
an object belongs, ``null`` anywhere. Each reader returns the value in the type the field has,
or raises ``ValueError`` naming the field (dotted: ``model_cfg.vision_cfg.width``), the value
and what was expected; the loader adds the file's name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["ABSENT", "MAX_INT", "MISSING", "get_bool", "get_float", "get_floats", "get_int",
           "get_mapping", "get_pair", "get_str"]

MISSING: Any = object()
"""The default of a field that must be present."""
ABSENT: Any = object()
"""What ``_lookup`` returns for an absent or null field that has a default."""

MAX_INT = 2**31 - 1
"""The largest integer a size field may hold (ViTConfig's own limits are lower)."""

_D = TypeVar("_D")  # the type of a reader's default, returned as it is for an absent field


def _lookup(data: Mapping[str, Any], key: str, default: Any, where: str) -> tuple[Any, str]:
    """``(value, dotted name)``; the value is ``ABSENT`` when the field is absent or null
    (unset, as transformers writes it) and has a default, which the reader then returns."""
    name = f"{where}.{key}" if where else key
    if key not in data or data[key] is None:
        if default is MISSING:
            raise ValueError(f"field {name!r} is missing" if key not in data
                             else f"field {name!r} is null")
        return ABSENT, name
    return data[key], name


def _wrong(name: str, value: Any, expected: str) -> ValueError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return ValueError(f"field {name!r} must be {expected}, got {shown} "
                      f"({type(value).__name__})")


def get_int(data: Mapping[str, Any], key: str, default: _D = MISSING, *, minimum: int = 1,
            where: str = "") -> int | _D:
    """An integer field in ``[minimum, MAX_INT]`` (not a bool, a float or a string)."""
    value, name = _lookup(data, key, default, where)
    if value is ABSENT:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not (
            minimum <= value <= MAX_INT):
        raise _wrong(name, value, f"an integer in [{minimum}, {MAX_INT}]")
    return value


def get_float(data: Mapping[str, Any], key: str, default: _D = MISSING, *,
              positive: bool = False, where: str = "") -> float | _D:
    """A finite number (an int is fine, a bool or a string is not); ``positive``: > 0."""
    value, name = _lookup(data, key, default, where)
    if value is ABSENT:
        return default
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or abs(value) > 1e30 or (positive and value <= 0)):
        raise _wrong(name, value, "a positive finite number" if positive else "a finite number")
    return float(value)


def get_bool(data: Mapping[str, Any], key: str, default: _D = MISSING, *,
             where: str = "") -> bool | _D:
    """``true`` or ``false``."""
    value, name = _lookup(data, key, default, where)
    if value is ABSENT:
        return default
    if not isinstance(value, bool):
        raise _wrong(name, value, "true or false")
    return value


def get_str(data: Mapping[str, Any], key: str, default: _D = MISSING, *,
            choices: Sequence[str] | None = None, where: str = "") -> str | _D:
    """A string, one of ``choices`` when given."""
    value, name = _lookup(data, key, default, where)
    if value is ABSENT:
        return default
    if not isinstance(value, str) or (choices is not None and value not in choices):
        expected = ("one of " + ", ".join(map(repr, choices))) if choices else "a string"
        raise _wrong(name, value, expected)
    return value


def get_mapping(data: Mapping[str, Any], key: str, default: _D = MISSING, *,
                where: str = "") -> Mapping[str, Any] | _D:
    """A JSON object."""
    value, name = _lookup(data, key, default, where)
    if value is ABSENT:
        return default
    if not isinstance(value, Mapping):
        raise _wrong(name, value, "an object")
    return value


def get_pair(data: Mapping[str, Any], key: str, default: _D = MISSING, *,
             where: str = "") -> tuple[int, int] | _D:
    """An image or patch size: an int, or a ``[height, width]`` list of ints."""
    value, name = _lookup(data, key, default, where)
    if value is ABSENT:
        return default
    items = list(value) if isinstance(value, list | tuple) and len(value) == 2 else [value]
    if not all(_is_size(v) for v in items):
        raise _wrong(name, value, f"an integer in [1, {MAX_INT}] or a [height, width] pair")
    return (items[0], items[-1])


def _is_size(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and 1 <= value <= MAX_INT


def get_floats(data: Mapping[str, Any], key: str, default: _D = MISSING, *, length: int,
               positive: bool = False, where: str = "") -> tuple[float, ...] | _D:
    """Per-channel numbers (a mean, a std): a list of ``length`` finite numbers (``positive``:
    each > 0), or one number for every channel."""
    value, name = _lookup(data, key, default, where)
    if value is ABSENT:
        return default
    items = [value] * length if isinstance(value, int | float) else value
    if not isinstance(items, list | tuple) or len(items) != length or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            and abs(v) <= 1e30 and (v > 0 or not positive) for v in items):
        kind = "positive finite numbers" if positive else "finite numbers"
        raise _wrong(name, value, f"a list of {length} {kind}")
    return tuple(float(v) for v in items)
