"""Suggestions for misspelt names, shared by every "unknown name" error."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def close_matches(name: str, candidates: Iterable[str], *, n: int = 3) -> list[str]:
    """The candidates most similar to ``name``, best first (case-insensitive)."""
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    found = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.6)
    return [by_lower[key] for key in found]


def suggestion(name: str, candidates: Iterable[str]) -> str:
    """A sentence naming the close matches of ``name``, or an empty string."""
    matches = close_matches(name, candidates)
    if not matches:
        return ""
    return " Did you mean " + ", ".join(repr(m) for m in matches) + "?"
