"""Rename tables for PyTorch-layout checkpoints: patterns with ``{i}`` (and other numbered)
fields, and fused tensors split into or stacked from row blocks.

A rule ``(source, vitzoo, part)`` maps one source key to one vitzoo key; ``part = (k, n)``
means the source tensor is the k-th of n row blocks of the vitzoo tensor (q, k, v of ``qkv``).
The same table serves both directions.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence

import torch

Rule = tuple[str, str, "tuple[int, int] | None"]


def _compile(template: str) -> re.Pattern[str]:
    escaped = re.escape(template)
    escaped = re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?P<{m.group(1)}>\\d+)", escaped)
    return re.compile(escaped + "$")


class RenameTable:
    """A compiled rename table (see the module docstring)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        self._forward = [(_compile(src), dst, part) for src, dst, part in self.rules]
        self._backward = [(_compile(dst), src, part) for src, dst, part in self.rules]

    def to_vitzoo(self, state: Mapping[str, torch.Tensor]
                  ) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Rename ``state``; returns the vitzoo dict and the keys no rule matched."""
        out: dict[str, torch.Tensor] = {}
        parts: dict[str, dict[int, torch.Tensor]] = defaultdict(dict)
        counts: dict[str, int] = {}
        unmatched = []
        for key, value in state.items():
            for pattern, target, part in self._forward:
                match = pattern.match(key)
                if match is None:
                    continue
                name = target.format(**match.groupdict())
                if part is None:
                    out[name] = value
                else:
                    parts[name][part[0]] = value
                    counts[name] = part[1]
                break
            else:
                unmatched.append(key)
        for name, blocks in parts.items():
            if len(blocks) == counts[name]:
                out[name] = torch.cat([blocks[k] for k in range(counts[name])], dim=0)
            else:  # an incomplete q/k/v set is reported, not guessed
                unmatched.extend(f"{name}[part {k}]" for k in sorted(blocks))
        return out, unmatched

    def from_vitzoo(self, state: Mapping[str, torch.Tensor]
                    ) -> tuple[dict[str, torch.Tensor], list[str]]:
        """The reverse renaming; returns the source-layout dict and the keys with no rule."""
        out: dict[str, torch.Tensor] = {}
        unmatched = []
        for key, value in state.items():
            matched = False
            for pattern, source, part in self._backward:
                match = pattern.match(key)
                if match is None:
                    continue
                matched = True
                chunk = value if part is None else value.chunk(part[1], dim=0)[part[0]]
                out[source.format(**match.groupdict())] = chunk.contiguous()
                if part is None:
                    break
            if not matched:
                unmatched.append(key)
        return out, unmatched
