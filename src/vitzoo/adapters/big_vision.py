"""big_vision's ``.npz`` layout: the pieces that differ from the published vision_transformer one.

big_vision (google-research/big_vision; ../shared/reference/big-vision-format.md) keeps the
parameters under ``params/`` or ``params/img/`` (``opt/target/`` in old ``flax.optim`` dumps),
with optimizer state beside them; stores encoder blocks scanned, one ``Transformer/encoderblock``
array per child with a leading depth axis; puts a top-level ``pos_embedding`` without a class row
(it is added before the class token is prepended); pools with a MAP head; and writes bfloat16
as NumPy dtype ``V2``. :mod:`vitzoo.adapters.jax_npz` brings all of it to its canonical form
with the functions here, and back.

Pure functions: arrays in, arrays out; nothing here builds or touches a model.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping
from typing import TypeVar

import numpy as np

from ..errors import CheckpointError
from .lazy import LazyArray
from .rename import Rule

__all__ = ["MAP_HEAD_RENAMES", "SCANNED", "bfloat16_to_float32", "check_weight_dtype",
           "float32_to_bfloat16",
           "ignored_entries", "join_pos_embedding", "params_prefix", "scan_blocks",
           "select_params", "split_pos_embedding", "to_float32", "unscan"]

# -- the MAP head's rows of jax_npz.RENAMES (transform names of jax_npz.TRANSFORMS) ---------------
_MAP_MHA = "MAPHead_0/MultiHeadDotProductAttention_0/"
MAP_HEAD_RENAMES: tuple[Rule, ...] = (
    Rule("MAPHead_0/probe", "attn_pool.latent"),
    Rule(_MAP_MHA + "query/kernel", "attn_pool.q.weight", "heads_in"),
    Rule(_MAP_MHA + "query/bias", "attn_pool.q.bias", "heads_bias"),
    Rule(_MAP_MHA + "key/kernel", "attn_pool.kv.weight", "heads_in", part=(0, 2)),
    Rule(_MAP_MHA + "value/kernel", "attn_pool.kv.weight", "heads_in", part=(1, 2)),
    Rule(_MAP_MHA + "key/bias", "attn_pool.kv.bias", "heads_bias", part=(0, 2)),
    Rule(_MAP_MHA + "value/bias", "attn_pool.kv.bias", "heads_bias", part=(1, 2)),
    Rule(_MAP_MHA + "out/kernel", "attn_pool.proj.weight", "heads_out"),
    Rule(_MAP_MHA + "out/bias", "attn_pool.proj.bias"),
    Rule("MAPHead_0/LayerNorm_0/scale", "attn_pool.norm.weight"),
    Rule("MAPHead_0/LayerNorm_0/bias", "attn_pool.norm.bias"),
    Rule("MAPHead_0/MlpBlock_0/Dense_0/kernel", "attn_pool.mlp.fc1.weight", "dense"),
    Rule("MAPHead_0/MlpBlock_0/Dense_0/bias", "attn_pool.mlp.fc1.bias"),
    Rule("MAPHead_0/MlpBlock_0/Dense_1/kernel", "attn_pool.mlp.fc2.weight", "dense"),
    Rule("MAPHead_0/MlpBlock_0/Dense_1/bias", "attn_pool.mlp.fc2.bias"),
)

SCANNED = "Transformer/encoderblock/"

_A = TypeVar("_A")  # an array: np.ndarray, or a LazyArray of io.open_npz


# -- container prefixes ---------------------------------------------------------------------------
def params_prefix(arrays: Mapping[str, object]) -> str:
    """The container prefix of a file's model parameters: ``params/`` (preferred, big_vision's
    rule) or ``opt/target/`` or none, plus ``img/`` for the image tower of a two-tower file
    (SigLIP, PaliGemma) that has no image model at the top."""
    prefix = next((p for p in ("params/", "opt/target/") if any(k.startswith(p) for k in arrays)),
                  "")
    inner = [k[len(prefix):] for k in arrays if k.startswith(prefix)]
    if "embedding/kernel" not in inner and any(k.startswith("img/") for k in inner):
        prefix += "img/"
    return prefix


def ignored_entries(arrays: Mapping[str, object]) -> dict[str, int]:
    """What :func:`select_params` leaves out, as ``{subtree: number of arrays}``: a two-tower
    file's text tower ``params/txt`` and its ``params/t`` (log-temperature) and ``params/b``
    (bias), optimizer state ``opt``, ``chrono`` ..."""
    prefix = params_prefix(arrays)
    counts: dict[str, int] = defaultdict(int)
    for key in arrays:
        if not key.startswith(prefix):
            parts = key.split("/")
            depth = next((d for d in range(1, len(parts))
                          if not prefix.startswith("/".join(parts[:d]) + "/")), len(parts))
            counts["/".join(parts[:depth])] += 1
    return dict(sorted(counts.items()))


def select_params(arrays: Mapping[str, _A]) -> dict[str, _A]:
    """The model's parameters from a file's arrays, without their container prefix
    (:func:`params_prefix`); optimizer state and other top-level entries are ignored."""
    prefix = params_prefix(arrays)
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


# -- bfloat16 storage -----------------------------------------------------------------------------
def bfloat16_to_float32(a: np.ndarray) -> np.ndarray:
    """Decode bfloat16 saved by ``np.savez`` (dtype ``V2``): the upper half of a float32."""
    return (a.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def float32_to_bfloat16(a: np.ndarray) -> np.ndarray:
    """Store float32 as bfloat16 the way ``np.savez`` does (dtype ``V2``), by truncation.

    Exact for values that came from bfloat16.
    """
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32) >> 16
    return bits.astype(np.uint16).view("V2")


def _is_bfloat16(dtype: np.dtype) -> bool:
    return dtype.kind == "V" and dtype.itemsize == 2 and dtype.fields is None


def check_weight_dtype(dtype: np.dtype) -> None:
    """Refuse a dtype no weight has.

    Raises:
        CheckpointError: a dtype that is not bool, integer, float or bfloat16 (complex,
            strings, objects, structured records).
    """
    if not _is_bfloat16(dtype) and (dtype.kind not in "biuf" or dtype.itemsize > 8):
        raise CheckpointError(f"an array of dtype {dtype} cannot be a weight; Google's "
                              "checkpoints hold float32, float16 or bfloat16 arrays")


def to_float32(a: np.ndarray) -> np.ndarray:
    """A stored array as float32: bfloat16 (``V2``) decoded exactly, no copy of float32.

    Raises:
        CheckpointError: a dtype that is not bool, integer, float or bfloat16 (complex,
            strings, objects, structured records).
    """
    a = np.asarray(a)
    check_weight_dtype(a.dtype)
    if _is_bfloat16(a.dtype):
        a = bfloat16_to_float32(a)
    return a.astype(np.float32, copy=False)


# -- scanned blocks -------------------------------------------------------------------------------
def unscan(tree: Mapping[str, np.ndarray | LazyArray]) -> dict[str, np.ndarray | LazyArray]:
    """Scanned ``Transformer/encoderblock/...`` arrays (leading depth axis) as one key per
    block, ``Transformer/encoderblock_{i}/...`` (views of the stacked arrays, no copy).

    Raises:
        CheckpointError: a scanned array without a depth axis, or two that disagree on it.
    """
    out = {k: v for k, v in tree.items() if not k.startswith(SCANNED)}
    depths = {k: np.shape(v)[0] if np.ndim(v) else None for k, v in tree.items()
              if k.startswith(SCANNED)}
    if None in depths.values() or len(set(depths.values())) > 1:
        found = ", ".join(f"{k} {tuple(np.shape(tree[k]))}" for k in sorted(depths)[:4])
        raise CheckpointError(f"the scanned encoder blocks have no common depth axis ({found} "
                              "...): the file is damaged or not a big_vision ViT")
    for key, value in tree.items():
        if key.startswith(SCANNED):  # (iterated: a lazy stacked array is read once)
            for i, row in enumerate(value):
                out[f"Transformer/encoderblock_{i}/{key[len(SCANNED):]}"] = row
    return out


def scan_blocks(tree: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stack ``Transformer/encoderblock_{i}/...`` into big_vision's scanned
    ``Transformer/encoderblock/...`` arrays (leading depth axis)."""
    out: dict[str, np.ndarray] = {}
    per_child: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
    for key, value in tree.items():
        match = re.match(r"Transformer/encoderblock_(\d+)/(.*)$", key)
        if match:
            per_child[match.group(2)][int(match.group(1))] = value
        else:
            out[key] = value
    for child, blocks in per_child.items():
        out[f"{SCANNED}{child}"] = np.stack([blocks[i] for i in sorted(blocks)])
    return out


# -- the position table ---------------------------------------------------------------------------
def split_pos_embedding(tree: Mapping[str, np.ndarray | LazyArray]
                        ) -> tuple[dict[str, np.ndarray | LazyArray],
                                   np.ndarray | LazyArray | None]:
    """big_vision's top-level position table taken out of ``tree``, in vitzoo's row order.

    Returns the other arrays and the ``(1, N [+ 1], D)`` table, whose class row (when the
    model has a class token) is zero: big_vision adds the table to the patches before it
    prepends the class token. An old table moved out of ``posembed_input`` keeps the class
    row it has. None when there is no table (sin-cos embeddings are computed, not stored).
    """
    rest = dict(tree)
    table = rest.pop("pos_embedding", None)
    if table is None:
        table = rest.pop("Transformer/pos_embedding", None)
    if table is None:
        return rest, None
    rows = table.shape[1]
    old_style = math.isqrt(rows - 1) ** 2 == rows - 1 and math.isqrt(rows) ** 2 != rows
    if "cls" in rest and not old_style:
        table = np.asarray(table)  # (read now when lazy: a small array)
        table = np.concatenate([np.zeros_like(table[:, :1]), table], axis=1)
    return rest, table


def join_pos_embedding(tree: Mapping[str, np.ndarray], table: np.ndarray | None
                       ) -> dict[str, np.ndarray]:
    """The way back: ``tree`` with big_vision's top-level ``pos_embedding`` (vitzoo's ``table``
    without the class row, which is folded into ``cls``: exact, as both are added to the class
    token before the first block)."""
    out = dict(tree)
    if table is not None:
        if "cls" in out:
            out["cls"] = out["cls"] + table[:, :1]
            table = table[:, 1:]
        out["pos_embedding"] = table
    return out
