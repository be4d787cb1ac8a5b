"""``FeatureInfo``: which feature maps a backbone returns, their channels and strides.

timm's description of a ``features_only`` model (``model.feature_info``), with timm's methods
and indexing, so detection and segmentation code written against timm reads it unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, cast

from ..errors import ConfigError

__all__ = ["FeatureInfo"]

# An accessor's ``idx``: None (the returned maps), an entry, or a list of entries (timm's).
_Idx = int | list[int] | tuple[int, ...] | None


def _as_tuple(out_indices: int | Sequence[int]) -> tuple[int, ...]:
    """timm's rule: an int n means the last n entries (as negative indices)."""
    if isinstance(out_indices, int) and not isinstance(out_indices, bool):
        return tuple(range(-out_indices, 0))
    return tuple(cast(Sequence[int], out_indices))  # a bool is no sequence: tuple() raises


class FeatureInfo:
    """The feature maps a backbone can return (``info``, one dict per map) and those it does
    return (``out_indices``).

    Each dict has ``module`` (the submodule whose output it is, e.g. ``"blocks.11"``),
    ``num_chs`` (channels) and ``reduction`` (stride in input pixels), plus ``index`` (its
    position in ``info``). The accessors take ``idx``: ``None`` for the returned maps, an int
    or a list for entries of ``info`` (returned or not), as timm's ``FeatureInfo`` does.

    Args:
        feature_info: one dict per map, in order of increasing ``reduction``.
        out_indices: the returned maps: indices into ``feature_info`` (negative from the end),
            or an int n for the last n.

    Raises:
        ConfigError: a dict lacks ``module`` / ``num_chs`` / ``reduction``, has a
            non-positive channel count, or its reduction is smaller than the one before.
    """

    def __init__(self, feature_info: Sequence[Mapping[str, Any]],
                 out_indices: int | Sequence[int]) -> None:
        info = []
        previous = 1
        for i, entry in enumerate(feature_info):
            missing = [k for k in ("module", "num_chs", "reduction") if k not in entry]
            if missing:
                raise ConfigError(f"feature_info[{i}] lacks {', '.join(missing)}: {entry!r}")
            if entry["num_chs"] <= 0 or entry["reduction"] < previous:
                raise ConfigError(f"feature_info[{i}] has num_chs={entry['num_chs']} and "
                                  f"reduction={entry['reduction']} (after {previous}); channels "
                                  "must be positive and reductions must not decrease")
            previous = entry["reduction"]
            info.append({**entry, "index": entry.get("index", i)})
        self.info: list[dict[str, Any]] = info
        self.out_indices: tuple[int, ...] = _as_tuple(out_indices)

    def from_other(self, out_indices: int | Sequence[int]) -> FeatureInfo:
        """A copy describing the same maps with other ``out_indices``."""
        return FeatureInfo(copy.deepcopy(self.info), out_indices)

    def get(self, key: str, idx: _Idx = None) -> Any:
        """``key`` of the returned maps (``idx=None``), of entry ``idx``, or of entries ``idx``."""
        if idx is None:
            return [self.info[i][key] for i in self.out_indices]
        if isinstance(idx, (list, tuple)):
            return [self.info[i][key] for i in idx]
        return self.info[idx][key]

    def get_dicts(self, keys: Sequence[str] | None = None,
                  idx: _Idx = None) -> Any:
        """The dicts (or only their ``keys``) of the returned maps, of entry ``idx`` or of
        entries ``idx``."""
        def pick(i: int) -> dict[str, Any]:
            return self.info[i] if keys is None else {k: self.info[i][k] for k in keys}

        if idx is None:
            return [pick(i) for i in self.out_indices]
        if isinstance(idx, (list, tuple)):
            return [pick(i) for i in idx]
        return pick(idx)

    def channels(self, idx: _Idx = None) -> Any:
        """Channels (``num_chs``), as :meth:`get`."""
        return self.get("num_chs", idx)

    def reduction(self, idx: _Idx = None) -> Any:
        """Strides in input pixels (``reduction``), as :meth:`get`."""
        return self.get("reduction", idx)

    def module_name(self, idx: _Idx = None) -> Any:
        """Submodule names (``module``), as :meth:`get`."""
        return self.get("module", idx)

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self.info[item]

    def __len__(self) -> int:
        return len(self.info)

    def __repr__(self) -> str:
        return (f"FeatureInfo(out_indices={self.out_indices}, channels={self.channels()}, "
                f"reduction={self.reduction()})")
