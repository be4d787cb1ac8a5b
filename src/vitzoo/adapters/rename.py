"""The one rename engine of the adapters: rules with numbered fields, transforms, fused parts.

A :class:`Rule` ``(source, vitzoo, transform, part)`` maps one key of a foreign layout to one
vitzoo key, and back:

- the templates hold numbered fields, ``blocks.{i}.norm1.weight``. A field written ``{s+1}``
  stands for the field plus one, for layouts that count from 1: Google's
  ``block{s+1}/unit{u+1}/conv{c}/kernel`` is timm's ``stages.{s}.blocks.{u}.conv{c}.weight``;
- ``transform`` names a :class:`Transform` of the table, a pair of pure functions (to vitzoo's
  layout, back to the foreign one); ``"copy"`` keeps the array;
- ``part = (k, n)``: the source array is the k-th of n row blocks of the vitzoo tensor (q, k, v
  of a fused ``qkv``). The blocks are fused in order once all n have arrived, an incomplete set
  is reported rather than guessed, and the way back splits the tensor.

Arrays are NumPy arrays or torch tensors; fusing, splitting and copying use the array's own
library. Nothing here knows a layout (the adapter modules hold the tables) or touches a model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = ["COPY", "RenameTable", "Rule", "Transform", "contiguous", "copy_into", "fuse_parts",
           "split_parts"]

Array = Any  # a np.ndarray or a torch.Tensor
OnUnmatched = Callable[[str, Array], None]
OnIncomplete = Callable[[Mapping[str, list[int]]], None]


class Rule(NamedTuple):
    """One row of a rename table (see the module docstring)."""

    source: str
    vitzoo: str
    transform: str = "copy"
    part: tuple[int, int] | None = None


class Transform(NamedTuple):
    """A pair of pure array functions: ``to_vitzoo(a)`` and ``from_vitzoo(a, *needs)``.

    ``needs`` names the context values the way back takes after the array, in order
    (``("num_heads",)`` to split the rows of a Linear into heads).
    """

    to_vitzoo: Callable[[Array], Array]
    from_vitzoo: Callable[..., Array]
    needs: tuple[str, ...] = ()


_COLUMNS = 64  # columns per block of a transposed copy: 64 rows of the original fit the cache


def copy_into(out: np.ndarray, a: np.ndarray) -> None:
    """``out[...] = a``; a transposed 2-D view is copied in blocks of columns, each reading
    whole rows of the original, about 3x faster than one strided copy."""
    if a.ndim == 2 and a.strides[0] < a.strides[1]:
        for j in range(0, a.shape[1], _COLUMNS):
            out[:, j:j + _COLUMNS] = a[:, j:j + _COLUMNS]
    else:
        out[...] = a


def contiguous(a: Array) -> Array:
    """``a`` in C order, in its own library (a copy only where it is not already)."""
    if isinstance(a, torch.Tensor):
        return a.contiguous()
    if a.flags.c_contiguous:
        return a
    out = np.empty(a.shape, a.dtype)
    copy_into(out, a)
    return out


def _unchanged(a: Array) -> Array:
    return a


COPY = Transform(_unchanged, contiguous)


def fuse_parts(parts: Mapping[int, Array], count: int) -> Array:
    """Stack row blocks ``0 .. count - 1`` in order into one fused tensor (q, k, v -> qkv)."""
    blocks = [parts[k] for k in range(count)]
    if isinstance(blocks[0], torch.Tensor):
        return torch.cat(blocks, dim=0)
    blocks = [np.asarray(b) for b in blocks]
    if any(b.ndim == 0 or b.shape[1:] != blocks[0].shape[1:] for b in blocks):
        return np.concatenate(blocks, axis=0)  # (which says what does not fit)
    out = np.empty((sum(len(b) for b in blocks), *blocks[0].shape[1:]),
                   np.result_type(*blocks))
    row = 0
    for b in blocks:  # each part copied once, into its rows of the fused tensor
        copy_into(out[row:row + len(b)], b)
        row += len(b)
    return out


def split_parts(a: Array, count: int) -> list[Array]:
    """The ``count`` row blocks of a fused tensor (``np.split`` / ``torch.chunk`` on rows)."""
    if isinstance(a, torch.Tensor):
        return list(a.chunk(count, dim=0))
    return np.split(a, count, axis=0)


_FIELD = re.compile(r"\{(\w+)(?:\+(\d+))?\}")


class _Template:
    """A key with numbered fields: ``blocks.{i}.attn.qkv.weight``, ``block{s+1}/unit{u+1}``.

    Field values are decimal strings; a field without an offset keeps the digits it matched.
    """

    def __init__(self, text: str) -> None:
        self.offsets: dict[str, int] = {}
        self._pieces: list[str | tuple[str, int]] = []
        regex, end = [], 0
        for m in _FIELD.finditer(text):
            name, offset = m.group(1), int(m.group(2) or 0)
            if name in self.offsets:
                raise ValueError(f"field {{{name}}} appears twice in {text!r}")
            self.offsets[name] = offset
            self._pieces += [text[end:m.start()], (name, offset)]
            regex += [re.escape(text[end:m.start()]), f"(?P<{name}>\\d+)"]
            end = m.end()
        self._pieces.append(text[end:])
        regex.append(re.escape(text[end:]))
        self.pattern = re.compile("".join(regex) + "$")

    def match(self, key: str) -> dict[str, str] | None:
        """The field values of ``key`` (offsets removed), or None when it does not fit."""
        m = self.pattern.match(key)
        if m is None:
            return None
        fields = m.groupdict()
        for name, offset in self.offsets.items():
            if offset:
                value = int(fields[name]) - offset
                if value < 0:  # block0 in a 1-based layout is no block
                    return None
                fields[name] = str(value)
        return fields

    def format(self, fields: Mapping[str, str]) -> str:
        """The key with these field values (offsets added)."""
        out = []
        for piece in self._pieces:
            if isinstance(piece, str):
                out.append(piece)
            else:
                name, offset = piece
                out.append(str(int(fields[name]) + offset) if offset else fields[name])
        return "".join(out)


class _Compiled(NamedTuple):
    rule: Rule
    source: _Template
    vitzoo: _Template
    transform: Transform


def _refuse(key: str, value: Array) -> None:
    raise KeyError(f"{key!r} matches no rule of the rename table")


def _refuse_incomplete(pending: Mapping[str, list[int]]) -> None:
    raise KeyError("fused tensors with missing parts: "
                   + ", ".join(f"{name} (has parts {parts})" for name, parts in pending.items()))


class RenameTable:
    """A compiled rename table: one foreign layout <-> vitzoo's, in both directions.

    Args:
        rules: :class:`Rule` rows (or 4-tuples in the same order). The first rule whose
            source template fits a key converts it; on the way back a fused tensor fits one
            rule per part, anything else the first rule that fits.
        transforms: the named transforms the rules use besides ``"copy"``.

    Raises:
        ValueError: a rule names an unknown transform, its templates have different fields,
            or the parts of one fused tensor are not ``0 .. n - 1`` of the same ``n``.
    """

    def __init__(self, rules: Iterable[Rule | tuple[Any, ...]],
                 transforms: Mapping[str, Transform] | None = None) -> None:
        self.rules = tuple(Rule(*r) for r in rules)
        self.transforms = {"copy": COPY, **(transforms or {})}
        self._compiled = [self._compile(r) for r in self.rules]
        fused: dict[str, set[tuple[int, int]]] = {}
        for r in self.rules:
            if r.part is not None:
                fused.setdefault(r.vitzoo, set()).add(r.part)
        for name, parts in fused.items():
            count = max(n for _, n in parts)
            if parts != {(k, count) for k in range(count)}:
                raise ValueError(f"the parts of {name!r} are {sorted(parts)}, not 0..n-1 of n")

    def _compile(self, rule: Rule) -> _Compiled:
        if rule.transform not in self.transforms:
            raise ValueError(f"rule {rule.source!r} names the transform {rule.transform!r}; "
                             f"known: {', '.join(self.transforms)}")
        source, vitzoo = _Template(rule.source), _Template(rule.vitzoo)
        if set(source.offsets) != set(vitzoo.offsets):
            raise ValueError(f"{rule.source!r} and {rule.vitzoo!r} have different fields")
        return _Compiled(rule, source, vitzoo, self.transforms[rule.transform])

    def match(self, key: str) -> tuple[Rule, str] | None:
        """The rule that converts source ``key`` and the vitzoo key it gives, or None."""
        found = self._find(key)
        return None if found is None else (found[0].rule, found[1])

    def _find(self, key: str) -> tuple[_Compiled, str] | None:
        for c in self._compiled:
            fields = c.source.match(key)
            if fields is not None:
                return c, c.vitzoo.format(fields)
        return None

    def _find_back(self, key: str) -> list[tuple[_Compiled, str]]:
        found = []
        for c in self._compiled:
            fields = c.vitzoo.match(key)
            if fields is not None:
                found.append((c, c.source.format(fields)))
                if c.rule.part is None:
                    break
        return found

    def _forward(self, pairs: Iterable[tuple[str, Array]], on_unmatched: OnUnmatched,
                 on_incomplete: OnIncomplete) -> Iterator[tuple[str, Array, tuple[int, int]]]:
        # yields (vitzoo key, array, rank); rank orders the dict form as the input: plain
        # tensors first, by position, then fused ones by the position of their first part
        pending: dict[str, dict[int, Array]] = {}
        first: dict[str, int] = {}
        for index, (key, value) in enumerate(pairs):
            found = self._find(key)
            if found is None:
                on_unmatched(key, value)
                continue
            c, name = found
            value = c.transform.to_vitzoo(value)
            if c.rule.part is None:
                yield name, value, (0, index)
                continue
            k, n = c.rule.part
            first.setdefault(name, index)
            pending.setdefault(name, {})[k] = value
            del value  # only `pending` holds the parts: fused, they are freed at once
            if len(pending[name]) == n:
                yield name, fuse_parts(pending.pop(name), n), (1, first.pop(name))
        if pending:
            on_incomplete({name: sorted(blocks) for name, blocks in pending.items()})

    def iter_to_vitzoo(self, pairs: Iterable[tuple[str, Array]], *,
                       on_unmatched: OnUnmatched | None = None,
                       on_incomplete: OnIncomplete | None = None
                       ) -> Iterator[tuple[str, Array]]:
        """Source ``(key, array)`` pairs -> vitzoo pairs, each yielded as soon as it is complete.

        Pairs are consumed one at a time, so a caller that gives up each source array as it
        goes keeps about one copy in memory.

        Args:
            pairs: the source arrays.
            on_unmatched: called with ``(key, array)`` for a key no rule fits (default: raise
                KeyError).
            on_incomplete: called once at the end with ``{vitzoo key: parts that arrived}``
                for fused tensors still missing parts (default: raise KeyError).
        """
        for name, value, _ in self._forward(pairs, on_unmatched or _refuse,
                                            on_incomplete or _refuse_incomplete):
            yield name, value

    def to_vitzoo(self, state: Mapping[str, Array]) -> tuple[dict[str, Array], list[str]]:
        """Rename ``state``: ``(vitzoo dict, unplaced keys)``.

        The unplaced keys are the keys no rule fits, then ``"<vitzoo key>[part k]"`` for each
        part of an incomplete fused tensor. The dict lists plain tensors in input order, then
        the fused ones in the order their first part came.
        """
        unmatched: list[str] = []

        def incomplete(pending: Mapping[str, list[int]]) -> None:
            unmatched.extend(f"{name}[part {k}]" for name, parts in pending.items() for k in parts)

        ranked = sorted(self._forward(state.items(), lambda key, _: unmatched.append(key),
                                      incomplete), key=lambda item: item[2])
        return {name: value for name, value, _ in ranked}, unmatched

    def iter_from_vitzoo(self, pairs: Iterable[tuple[str, Array]], *,
                         context: Mapping[str, Any] | None = None,
                         on_unmatched: OnUnmatched | None = None
                         ) -> Iterator[tuple[str, Array]]:
        """vitzoo ``(key, array)`` pairs -> source pairs (a fused tensor gives one per part).

        Args:
            pairs: the vitzoo arrays.
            context: the values the transforms' way back needs (e.g. ``num_heads``).
            on_unmatched: called with ``(key, array)`` for a key no rule fits (default: raise
                KeyError).

        Raises:
            ValueError: a transform needs a value ``context`` does not have.
        """
        context = context or {}
        on_unmatched = on_unmatched or _refuse
        for key, value in pairs:
            found = self._find_back(key)
            if not found:
                on_unmatched(key, value)
                continue
            blocks: dict[int, list[Array]] = {}  # the split of the tensor, by count
            for c, source in found:
                piece = value
                if c.rule.part is not None:
                    k, n = c.rule.part
                    if n not in blocks:
                        blocks[n] = split_parts(value, n)
                    piece = blocks[n][k]
                missing = [name for name in c.transform.needs if name not in context]
                if missing:
                    raise ValueError(f"converting {key!r} back needs {', '.join(missing)}=")
                args = [context[name] for name in c.transform.needs]
                yield source, c.transform.from_vitzoo(piece, *args)

    def from_vitzoo(self, state: Mapping[str, Array], *,
                    context: Mapping[str, Any] | None = None
                    ) -> tuple[dict[str, Array], list[str]]:
        """The reverse renaming: ``(source-layout dict, keys no rule fits)``."""
        unmatched: list[str] = []
        out = dict(self.iter_from_vitzoo(state.items(), context=context,
                                         on_unmatched=lambda key, _: unmatched.append(key)))
        return out, unmatched
