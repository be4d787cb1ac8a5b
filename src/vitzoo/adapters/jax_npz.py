"""Google's JAX ``.npz`` checkpoints <-> vitzoo state dicts.

Layouts (../shared/reference/jax-npz-format.md, big-vision-format.md): the published
vision_transformer files (pre-Linen names, GroupNorm ``(1, 1, 1, C)``), the Linen layout, and
big_vision's (prefixes, scanned blocks, a position table without a class row, the MAP head,
bfloat16 storage: the pieces in :mod:`vitzoo.adapters.big_vision`). Everything is first brought
to one canonical form (Linen names, one key per block, the position table under
``Transformer/posembed_input/pos_embedding`` in vitzoo's row order), which the rename table
maps to vitzoo's keys on the shared engine (:mod:`vitzoo.adapters.rename`). The reverse
direction writes the published layout that Google's ``checkpoint.load`` reads (or big_vision's,
for what only big_vision can express).

Pure functions: arrays in, arrays out; nothing here builds or touches a model.
"""

from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import CheckpointError
from ..pretrained import numerics_of
from . import big_vision
from .big_vision import bfloat16_to_float32, float32_to_bfloat16, scan_blocks, select_params
from .lazy import LazyArray
from .rename import RenameTable, Rule, Transform, contiguous, fuse_parts

logger = logging.getLogger(__name__)

__all__ = [
    "RENAMES", "TABLE", "TRANSFORMS", "bfloat16_to_float32", "canonicalize", "check_ranks",
    "conv_kernel_to_jax", "conv_kernel_to_torch", "dense_to_jax", "dense_to_torch", "flatten",
    "float32_to_bfloat16", "from_vitzoo", "fuse_parts", "head_is_zero", "heads_bias_to_jax",
    "heads_in_to_jax", "heads_in_to_torch", "heads_out_to_jax", "heads_out_to_torch",
    "infer_config", "iter_vitzoo", "renumber_pre_linen", "scan_blocks", "select_params",
    "to_vitzoo", "vitzoo_entries",
]

# -- the rename table -----------------------------------------------------------------------------
# (canonical JAX key, vitzoo key, transform, part) on the shared engine (rename.py): the
# transforms are TRANSFORMS below; ``part = (i, n)``: the array is the i-th of n row blocks of
# the vitzoo tensor (q, k, v in the fused qkv; k, v in the MAP head's kv).
_POS = "Transformer/posembed_input/pos_embedding"
_GROUP_NORM = re.compile(r"(^|/)gn(\d+|_root|_proj)/(scale|bias)$")
_BLOCK = "Transformer/encoderblock_{i}/"
_MHA = _BLOCK + "MultiHeadDotProductAttention_0/"
_UNIT = "block{s+1}/unit{u+1}/"  # 1-based in Google's names, 0-based in timm's
_STAGE = "patch_embed.backbone.stages.{s}.blocks.{u}."
_STEM = "patch_embed.backbone.stem."

RENAMES: tuple[Rule, ...] = (
    Rule("embedding/kernel", "patch_embed.proj.weight", "conv"),
    Rule("embedding/bias", "patch_embed.proj.bias"),
    Rule("cls", "cls_token"),
    Rule(_POS, "pos_embed"),
    Rule(_BLOCK + "LayerNorm_0/scale", "blocks.{i}.norm1.weight"),
    Rule(_BLOCK + "LayerNorm_0/bias", "blocks.{i}.norm1.bias"),
    Rule(_MHA + "query/kernel", "blocks.{i}.attn.qkv.weight", "heads_in", part=(0, 3)),
    Rule(_MHA + "key/kernel", "blocks.{i}.attn.qkv.weight", "heads_in", part=(1, 3)),
    Rule(_MHA + "value/kernel", "blocks.{i}.attn.qkv.weight", "heads_in", part=(2, 3)),
    Rule(_MHA + "query/bias", "blocks.{i}.attn.qkv.bias", "heads_bias", part=(0, 3)),
    Rule(_MHA + "key/bias", "blocks.{i}.attn.qkv.bias", "heads_bias", part=(1, 3)),
    Rule(_MHA + "value/bias", "blocks.{i}.attn.qkv.bias", "heads_bias", part=(2, 3)),
    Rule(_MHA + "out/kernel", "blocks.{i}.attn.proj.weight", "heads_out"),
    Rule(_MHA + "out/bias", "blocks.{i}.attn.proj.bias"),
    Rule(_BLOCK + "LayerNorm_1/scale", "blocks.{i}.norm2.weight"),
    Rule(_BLOCK + "LayerNorm_1/bias", "blocks.{i}.norm2.bias"),
    Rule(_BLOCK + "MlpBlock_0/Dense_0/kernel", "blocks.{i}.mlp.fc1.weight", "dense"),
    Rule(_BLOCK + "MlpBlock_0/Dense_0/bias", "blocks.{i}.mlp.fc1.bias"),
    Rule(_BLOCK + "MlpBlock_0/Dense_1/kernel", "blocks.{i}.mlp.fc2.weight", "dense"),
    Rule(_BLOCK + "MlpBlock_0/Dense_1/bias", "blocks.{i}.mlp.fc2.bias"),
    Rule("Transformer/encoder_norm/scale", "norm.weight"),
    Rule("Transformer/encoder_norm/bias", "norm.bias"),
    *big_vision.MAP_HEAD_RENAMES,
    Rule("pre_logits/kernel", "pre_logits.fc.weight", "dense"),
    Rule("pre_logits/bias", "pre_logits.fc.bias"),
    Rule("head/kernel", "head.weight", "dense"),
    Rule("head/bias", "head.bias"),
    # the hybrid's ResNet
    Rule("conv_root/kernel", _STEM + "conv.weight", "conv"),
    Rule("gn_root/scale", _STEM + "norm.weight", "group_norm"),
    Rule("gn_root/bias", _STEM + "norm.bias", "group_norm"),
    Rule(_UNIT + "conv{c}/kernel", _STAGE + "conv{c}.weight", "conv"),
    Rule(_UNIT + "gn{c}/scale", _STAGE + "norm{c}.weight", "group_norm"),
    Rule(_UNIT + "gn{c}/bias", _STAGE + "norm{c}.bias", "group_norm"),
    Rule(_UNIT + "conv_proj/kernel", _STAGE + "downsample.conv.weight", "conv"),
    Rule(_UNIT + "gn_proj/scale", _STAGE + "downsample.norm.weight", "group_norm"),
    Rule(_UNIT + "gn_proj/bias", _STAGE + "downsample.norm.bias", "group_norm"),
)


# -- array transforms (each tested on its own) ----------------------------------------------------
def conv_kernel_to_torch(k: np.ndarray) -> np.ndarray:
    """HWIO -> OIHW (a view: the writer or the loader makes it contiguous, copying once)."""
    w: np.ndarray = k.transpose(3, 2, 0, 1)
    return w


def conv_kernel_to_jax(w: np.ndarray) -> np.ndarray:
    """OIHW -> HWIO."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def dense_to_torch(k: np.ndarray) -> np.ndarray:
    """``(in, out)`` kernel -> ``(out, in)`` Linear weight (a view)."""
    w: np.ndarray = k.T
    return w


def dense_to_jax(w: np.ndarray) -> np.ndarray:
    """``(out, in)`` Linear weight -> ``(in, out)`` kernel, C-contiguous (as ``np.savez``
    writes it)."""
    return np.ascontiguousarray(w.T)


def heads_in_to_torch(k: np.ndarray) -> np.ndarray:
    """``(D, H, hd)`` query/key/value kernel -> ``(H*hd, D)``, rows head-major (a view: fused
    q, k, v are copied once, into the qkv tensor)."""
    w: np.ndarray = k.reshape(k.shape[0], -1).T
    return w


def heads_in_to_jax(w: np.ndarray, num_heads: int) -> np.ndarray:
    """``(H*hd, D)`` Linear weight -> ``(D, H, hd)``."""
    return np.ascontiguousarray(w.T.reshape(w.shape[1], num_heads, -1))


def heads_out_to_torch(k: np.ndarray) -> np.ndarray:
    """``(H, hd, D)`` output kernel -> ``(D, H*hd)`` (a view)."""
    w: np.ndarray = k.reshape(-1, k.shape[-1]).T
    return w


def heads_out_to_jax(w: np.ndarray, num_heads: int) -> np.ndarray:
    """``(D, H*hd)`` Linear weight -> ``(H, hd, D)``."""
    return np.ascontiguousarray(w.T.reshape(num_heads, -1, w.shape[0]))


def flatten(a: np.ndarray) -> np.ndarray:
    """An ``(H, hd)`` attention bias -> ``(H*hd,)``; GroupNorm ``(1, 1, 1, C)`` -> ``(C,)``."""
    return a.reshape(-1)


def heads_bias_to_jax(b: np.ndarray, num_heads: int) -> np.ndarray:
    """``(H*hd,)`` Linear bias -> ``(H, hd)``."""
    return np.ascontiguousarray(b.reshape(num_heads, -1))


TRANSFORMS = {
    "conv": Transform(conv_kernel_to_torch, conv_kernel_to_jax),
    "dense": Transform(dense_to_torch, dense_to_jax),
    "heads_in": Transform(heads_in_to_torch, heads_in_to_jax, needs=("num_heads",)),
    "heads_out": Transform(heads_out_to_torch, heads_out_to_jax, needs=("num_heads",)),
    "heads_bias": Transform(flatten, heads_bias_to_jax, needs=("num_heads",)),
    # flat in vitzoo; the published layout's (1, 1, 1, C) is restored by _published_names
    "group_norm": Transform(flatten, contiguous),
}
TABLE = RenameTable(RENAMES, TRANSFORMS)

# The stem-only hybrid (R+ViT-Ti/16: a ResNet stem, no stages) has no ``stem.`` level in timm's
# names (``patch_embed.backbone.conv.weight``); the table writes the staged models' names.
_STEM_ONLY = {_STEM + n: "patch_embed.backbone." + n
              for n in ("conv.weight", "norm.weight", "norm.bias")}
_STAGED = {v: k for k, v in _STEM_ONLY.items()}


# -- canonical form -------------------------------------------------------------------------------
def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def renumber_pre_linen(keys: Iterable[str]) -> dict[str, str]:
    """flax's ``convert_pre_linen``: at every level, renumber ``<Name>_<n>`` siblings per name
    from 0 in natural order (``LayerNorm_0, LayerNorm_2 -> LayerNorm_0, LayerNorm_1``).

    Returns old key -> new key.
    """
    children: dict[str, set[str]] = defaultdict(set)
    keys = list(keys)
    for key in keys:
        parts = key.split("/")
        for depth in range(len(parts)):
            children["/".join(parts[:depth])].add(parts[depth])
    rename: dict[tuple[str, str], str] = {}
    for parent, names in children.items():
        groups: dict[str, list[str]] = defaultdict(list)
        for name in names:
            match = re.fullmatch(r"(.*)_(\d+)", name)
            if match:
                groups[match.group(1)].append(name)
        for base, members in groups.items():
            for new_index, old in enumerate(sorted(members, key=_natural_key)):
                rename[(parent, old)] = f"{base}_{new_index}"
    mapping = {}
    for key in keys:
        parts = key.split("/")
        new_parts = [rename.get(("/".join(parts[:d]), p), p) for d, p in enumerate(parts)]
        mapping[key] = "/".join(new_parts)
    return mapping


def _float32(value: np.ndarray | LazyArray) -> np.ndarray | LazyArray:
    """A stored array as float32 (:func:`big_vision.to_float32`); a lazy one's dtype is
    checked now and its data decoded when it is loaded."""
    if isinstance(value, LazyArray):
        big_vision.check_weight_dtype(value.dtype)
        return value.map(big_vision.to_float32, dtype=np.float32)
    return big_vision.to_float32(value)


def canonicalize(arrays: Mapping[str, np.ndarray | LazyArray]
                 ) -> tuple[dict[str, np.ndarray | LazyArray], dict[str, Any]]:
    """Bring any supported layout to the canonical one.

    ``arrays`` may be :class:`~vitzoo.adapters.lazy.LazyArray` s (``io.open_npz``): the
    canonical arrays are then lazy too, and no data is read here but a big_vision position
    table's.

    Returns the canonical arrays (float32, GroupNorm vectors flat, one key per block, the
    position table in vitzoo's row order: class row first when there is a class token) and
    notes about the source: ``layout`` (``"vision_transformer"`` or ``"big_vision"``),
    ``pos_embed`` (``"learn"`` or ``"sincos"``), ``scanned``, ``dtypes``, ``ignored`` (the
    subtrees outside the model's parameters, e.g. a SigLIP file's text tower ``params/txt``,
    ``params/t`` and ``params/b``, with their array counts; logged, not an error).
    """
    params = select_params(arrays)
    ignored = big_vision.ignored_entries(arrays)
    if ignored:
        logger.info("using the arrays under %r; ignoring %s", big_vision.params_prefix(arrays),
                    ", ".join(f"{k} ({n} arrays)" for k, n in ignored.items()))
    notes: dict[str, Any] = {"layout": "vision_transformer", "scanned": False,
                             "dtypes": sorted({str(v.dtype) for v in params.values()}),
                             "ignored": ignored}
    decoded = {key: _float32(value) for key, value in params.items()}
    mapping = renumber_pre_linen(decoded)
    tree = {mapping[k]: v for k, v in decoded.items()}
    if any(k.startswith(big_vision.SCANNED) for k in tree):
        notes["scanned"] = True
        tree = big_vision.unscan(tree)
    for key in list(tree):
        if _GROUP_NORM.search(key):
            tree[key] = tree[key].reshape(-1)
    check_ranks(tree)
    if _POS not in tree:  # big_vision's table (or none: sin-cos)
        notes["layout"] = "big_vision"
        tree, table = big_vision.split_pos_embedding(tree)
        if table is not None:
            tree[_POS] = table
    notes["pos_embed"] = "learn" if _POS in tree else "sincos"
    if "MAPHead_0/probe" in tree:
        notes["layout"] = "big_vision"
    return tree, notes


# The rank of every canonical array a ViT has (first match wins); a file whose arrays have other
# ranks, or no elements, is refused before anything indexes their shapes.
_RANKS: tuple[tuple[re.Pattern[str], int], ...] = tuple((re.compile(p), n) for p, n in (
    (r"(^|/)(embedding|conv_root|conv\d+|conv_proj)/kernel$", 4),
    (r"/(query|key|value|out)/kernel$", 3),
    (r"/(query|key|value)/bias$", 2),
    (r"(^|/)(Dense_\d+|head|pre_logits)/kernel$", 2),
    (r"(^|/)(pos_embedding|cls|probe)$", 3),
    (r"/(bias|scale)$", 1),
))


def check_ranks(tree: Mapping[str, np.ndarray | LazyArray]) -> None:
    """Refuse canonical arrays of the wrong rank (a 1-D query kernel, a 0-d position table)
    or with no elements; arrays no rule knows are left to the rename table.

    Raises:
        CheckpointError: the first such array, named with its shape and the rank it needs.
    """
    for key, value in tree.items():
        rank = next((n for pattern, n in _RANKS if pattern.search(key)), None)
        if rank is None:
            continue
        if np.ndim(value) != rank:
            raise CheckpointError(f"array {key!r} has the shape {tuple(np.shape(value))}, not "
                                  f"{rank} dimensions: this is not a ViT checkpoint vitzoo can "
                                  "read (the file is damaged or of another model)")
        if np.size(value) == 0:
            raise CheckpointError(f"array {key!r} has the shape {tuple(np.shape(value))}, with "
                                  "no elements: this is not a ViT checkpoint vitzoo can read")


# -- conversion -----------------------------------------------------------------------------------
def _no_place(key: str, value: np.ndarray) -> None:
    raise KeyError(f"array {key!r} {tuple(value.shape)} has no place in a vitzoo model")


def _incomplete(pending: Mapping[str, list[int]]) -> None:
    missing = ", ".join(sorted(pending))
    raise KeyError(f"incomplete attention projections (q, k, v) for {missing}")


def _read_ahead(tree: dict[str, Any]) -> Iterator[tuple[str, np.ndarray]]:
    """``tree``'s entries in key order, each removed from it and read (a
    :class:`~vitzoo.adapters.lazy.LazyArray`), the next one read in a thread while the caller
    converts and writes this one (reading, checking and copying release the GIL): two arrays
    in memory, the reading overlapped with the rest."""
    keys = sorted(tree)
    if not any(isinstance(v, LazyArray) for v in tree.values()):
        for key in keys:
            yield key, np.asarray(tree.pop(key))
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitzoo-read") as pool:
        ahead = pool.submit(np.asarray, tree.pop(keys[0])) if keys else None
        for i, key in enumerate(keys):
            assert ahead is not None  # submitted for every key before its turn
            value = ahead.result()
            ahead = pool.submit(np.asarray, tree.pop(keys[i + 1])) if i + 1 < len(keys) else None
            yield key, value
            del value


def iter_vitzoo(tree: dict[str, np.ndarray],
                progress: Callable[[int, int], None] | None = None,
                ) -> Iterator[tuple[str, np.ndarray]]:
    """Canonical JAX arrays -> vitzoo ``(key, array)`` pairs, one at a time.

    Entries are removed from ``tree`` as they are converted (and read, when they are
    :class:`~vitzoo.adapters.lazy.LazyArray` s), so a caller that streams the output keeps
    about one array in memory. Transposed tensors are yielded as views (fused ones as one new
    array): make them contiguous where needed (``np.ascontiguousarray``, one copy).

    Raises:
        KeyError: an array has no place in vitzoo (the message names it).
        CheckpointError: arrays whose shapes cannot be converted (the q, k and v kernels of
            a block disagree, a kernel does not split into heads).
    """
    stem_only = not any(re.match(r"block\d+/", k) for k in tree)
    total = len(tree)
    current = [""]

    def popped() -> Iterator[tuple[str, np.ndarray]]:
        for done, (key, value) in enumerate(_read_ahead(tree), start=1):
            current[0] = key
            yield key, value
            if progress is not None:
                progress(done, total)

    try:
        for name, value in TABLE.iter_to_vitzoo(popped(), on_unmatched=_no_place,
                                                on_incomplete=_incomplete):
            yield (_STEM_ONLY.get(name, name) if stem_only else name), value
    except (ValueError, IndexError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"the arrays up to {current[0]!r} cannot be converted to vitzoo's "
                              f"layout ({err}); their shapes do not fit together, so this is "
                              "not a ViT checkpoint vitzoo can read") from err


def to_vitzoo(tree: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical JAX arrays -> a vitzoo state dict (numpy, float32, C-contiguous); ``tree`` is
    not changed."""
    return {k: np.ascontiguousarray(v) for k, v in iter_vitzoo(dict(tree))}


def vitzoo_entries(tree: Mapping[str, Any]) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    """The ``(key, dtype, shape)`` of every tensor :func:`iter_vitzoo` makes of ``tree``, in its
    order, without reading any data: the same conversion runs on stand-ins of the canonical
    shapes that hold one element each (``np.broadcast_to``), whose transposes and reshapes are
    views. A file's safetensors header is made from them before its first array is read.

    Raises:
        KeyError, CheckpointError: as :func:`iter_vitzoo`.
    """
    stand_ins = {k: np.broadcast_to(np.zeros((), np.float32), np.shape(v))
                 for k, v in tree.items()}
    return [(k, v.dtype, tuple(v.shape)) for k, v in iter_vitzoo(stand_ins)]


def _no_equivalent(key: str, value: np.ndarray) -> None:
    raise KeyError(f"{key!r} {tuple(value.shape)} has no Google equivalent")


def from_vitzoo(state: Mapping[str, np.ndarray], *, num_heads: int,
                layout: str = "vision_transformer") -> dict[str, np.ndarray]:
    """vitzoo state dict -> Google arrays.

    ``layout="vision_transformer"`` writes the published names (``MultiHeadDotProductAttention_1``,
    ``LayerNorm_2``, ``MlpBlock_3``, GroupNorm ``(1, 1, 1, C)``) that
    ``vit_jax.checkpoint.load`` reads; ``"big_vision"`` writes Linen names with a top-level
    ``pos_embedding`` without the class row (folded into ``cls``, which is exact).
    """
    if layout not in ("vision_transformer", "big_vision"):
        raise ValueError(f"layout={layout!r} is not 'vision_transformer' or 'big_vision'")
    staged = ((_STAGED.get(k, k), v) for k, v in state.items())
    out = dict(TABLE.iter_from_vitzoo(staged, context={"num_heads": num_heads},
                                      on_unmatched=_no_equivalent))
    if layout == "vision_transformer":
        return _published_names(out)
    table = out.pop(_POS, None)
    return big_vision.join_pos_embedding(out, table)


_PUBLISHED = {
    "MultiHeadDotProductAttention_0": "MultiHeadDotProductAttention_1",
    "LayerNorm_1": "LayerNorm_2",
    "MlpBlock_0": "MlpBlock_3",
}


def _published_names(tree: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in tree.items():
        if key.startswith("Transformer/encoderblock_"):
            parts = key.split("/")
            parts[2] = _PUBLISHED.get(parts[2], parts[2])
            key = "/".join(parts)
        if _GROUP_NORM.search(key):
            value = value.reshape(1, 1, 1, -1)  # flax < 0.3.6 stored GroupNorm params 4-D
        out[key] = value
    return out


# -- architecture from shapes ---------------------------------------------------------------------
def infer_config(tree: Mapping[str, np.ndarray | LazyArray], notes: Mapping[str, Any],
                 img_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """ViTConfig fields read off canonical arrays (with Google's numerics).

    Width, depth, heads, MLP size, patch, class token / gap / MAP, representation layer,
    classes and hybrid stages come from the shapes. The image size comes from the square
    position table; ``img_size`` is used only where the file cannot say (sin-cos models have
    no table, a non-square table needs it).

    Raises:
        ValueError: the arrays are not a ViT, or the image size cannot be determined.
    """
    if "embedding/kernel" not in tree:
        two_tower = any(k.startswith(("txt/", "img/")) for k in tree) or any(
            k.rsplit("/", 1)[-1] == "txt" for k in notes.get("ignored", {}))
        if two_tower:
            raise ValueError(
                "this two-tower (SigLIP / LiT) file has no complete image tower "
                "(no img/embedding/kernel); vitzoo reads the image tower only: check that the "
                "file is complete, or re-download it")
        raise ValueError("no 'embedding/kernel' array: this is not a Google ViT checkpoint")
    ph, pw, cin, dim = tree["embedding/kernel"].shape
    depth = len({m.group(1) for k in tree
                 if (m := re.match(r"Transformer/encoderblock_(\d+)/", k))})
    if depth == 0:
        raise ValueError("no Transformer/encoderblock_* arrays: this is not a ViT checkpoint")
    query = tree.get("Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel")
    fc1 = tree.get("Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel")
    if query is None or fc1 is None:
        raise ValueError("encoder block 0 has no attention query kernel or MLP: not a ViT")
    cfg: dict[str, Any] = {
        "embed_dim": int(dim), "depth": depth, "num_heads": int(query.shape[1]),
        "mlp_dim": int(fc1.shape[1]), "patch_size": (int(ph), int(pw)),
        "qkv_bias": True, "class_token": "cls" in tree,
        "global_pool": "token" if "cls" in tree else ("map" if "MAPHead_0/probe" in tree
                                                      else "avg"),
        "fc_norm": False, "pos_embed": notes["pos_embed"],
        **numerics_of("jax"), "norm_eps": 1e-6, "weight_init": "jax",  # flax LayerNorm eps
        "num_classes": int(tree["head/kernel"].shape[1]) if "head/kernel" in tree else 0,
    }
    if "pre_logits/kernel" in tree:
        cfg["representation_size"] = int(tree["pre_logits/kernel"].shape[1])
    halvings = 0
    if "conv_root/kernel" in tree:
        stages = defaultdict(set)
        for key in tree:
            if m := re.match(r"block(\d+)/unit(\d+)/", key):
                stages[int(m.group(1))].add(int(m.group(2)))
        cfg["backbone_layers"] = tuple(len(stages[s]) for s in sorted(stages))
        cfg["backbone_width"] = int(tree["conv_root/kernel"].shape[-1])
        cin = tree["conv_root/kernel"].shape[2]
        halvings = 2 + max(len(stages) - 1, 0)
    cfg["in_chans"] = int(cin)
    table = tree.get(_POS)
    if table is not None:
        patches = table.shape[1] - int(cfg["class_token"])
        side = math.isqrt(patches)
        if side * side == patches:
            scale = 2 ** halvings
            img_size = (_native_side(side, int(ph) * scale), _native_side(side, int(pw) * scale))
        elif img_size is None:
            raise ValueError(
                f"the position table has {patches} patch rows, not a square grid: pass img_size"
            )
    elif img_size is None:
        raise ValueError(
            "this checkpoint has no position table (2-D sin-cos embeddings), so its image "
            "size is not in the file: pass img_size"
        )
    cfg["img_size"] = tuple(img_size)
    return cfg


def _native_side(grid: int, step: int) -> int:
    """The input side a ``grid``-patch table was trained at: ``grid * step``, unless that is
    not a multiple of 16 (every resolution Google and big_vision train at is: 224, 256, 384,
    512) and a multiple of 16 gives the same VALID-convolution grid, then the smallest such:
    a 27 x 27 table of 14-pixel patches is a 384-pixel model (So400m/14-384 drops the last 6
    rows, as big_vision's convolution does), not a 378-pixel one."""
    side = grid * step
    candidate = -(-side // 16) * 16
    return candidate if side % 16 and candidate // step == grid else side


def head_is_zero(tree: Mapping[str, np.ndarray]) -> bool:
    """Whether the file's classifier is all zeros (Google zeroed some 21k heads on purpose)."""
    kernel = tree.get("head/kernel")
    return kernel is not None and not np.any(kernel) and not np.any(tree.get("head/bias", 0))
