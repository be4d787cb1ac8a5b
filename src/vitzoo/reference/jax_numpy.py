"""Google's ViT forward pass in float64 NumPy, run on the original arrays of a JAX checkpoint.

An independent reference for ``vitzoo convert --verify``: it imports neither torch nor any other
part of vitzoo and was written only from ``jax-npz-format.md`` (google-research/vision_transformer
at ``c6de1e5``: ``vit_jax/models_vit.py``, ``vit_jax/models_resnet.py``) and
``big-vision-format.md`` (google-research/big_vision at ``0127fb6``: ``big_vision/models/vit.py``).

Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021); Beyer et al., "Better plain ViT
baselines for ImageNet-1k" (2022); Kolesnikov et al., "Big Transfer (BiT)" (ECCV 2020).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["jax_vit_forward"]

_LN_EPS = 1e-6  # flax nn.LayerNorm default (torch's 1e-5 moves the logits by ~1e-5)
_GN_EPS = 1e-6  # flax nn.GroupNorm default
_GN_GROUPS = 32  # flax nn.GroupNorm default
_WS_EPS = 1e-5  # vit_jax StdConv: added to the std, not inside the square root
_BLOCK_PARTS = ("LayerNorm", "MultiHeadDotProductAttention", "MlpBlock")


def _to_float64(value: np.ndarray) -> np.ndarray:
    """Any stored array as float64; bfloat16 saved by numpy reads back as void 'V2'."""
    a = np.asarray(value)
    if a.dtype.kind == "V":
        if a.dtype.itemsize != 2:
            raise ValueError(f"cannot read a void array of itemsize {a.dtype.itemsize} (not bf16)")
        # The 2 bytes are the upper half of the IEEE float32, so widening is exact.
        a = (np.ascontiguousarray(a).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float64)


class _Tree:
    """The flat checkpoint seen under one path prefix, recording every key it hands out.

    ``index`` selects one block of a scanned (depth-stacked) subtree.
    """

    def __init__(self, arrays: dict[str, np.ndarray], used: set[str], prefix: str = "",
                 index: int | None = None) -> None:
        self.arrays, self.used, self.prefix, self.index = arrays, used, prefix, index

    def __call__(self, name: str) -> np.ndarray:
        key = self.prefix + name
        if key not in self.arrays:
            raise ValueError(f"checkpoint has no key {key!r}")
        self.used.add(key)
        return self.arrays[key] if self.index is None else self.arrays[key][self.index]

    def __contains__(self, name: str) -> bool:
        key = self.prefix + name
        return any(k == key or k.startswith(key + "/") for k in self.arrays)

    def child(self, name: str, index: int | None = None) -> _Tree:
        return _Tree(self.arrays, self.used, f"{self.prefix}{name}/",
                     self.index if index is None else index)

    def children(self) -> set[str]:
        n = len(self.prefix)
        return {k[n:].split("/", 1)[0] for k in self.arrays if k.startswith(self.prefix)}


def _expect(a: np.ndarray, shape: tuple[int | None, ...], what: str) -> np.ndarray:
    if a.ndim != len(shape) or any(s not in (None, d) for s, d in zip(shape, a.shape, strict=True)):
        want = tuple("?" if s is None else s for s in shape)
        raise ValueError(f"{what} has shape {a.shape}, expected {want}")
    return a


def _numbered(names: set[str], pattern: str, start: int, what: str) -> list[str]:
    """Names matching ``pattern`` (one number group), checked to run start, start+1, ..."""
    found = sorted((int(m[1]), m[0]) for n in names if (m := re.fullmatch(pattern, n)))
    if [i for i, _ in found] != list(range(start, start + len(found))):
        raise ValueError(f"{what} are not numbered {start}, {start + 1}, ...: "
                         f"{[n for _, n in found]}")
    return [n for _, n in found]


# --- numerics --------------------------------------------------------------------------------

def _layer_norm(x: np.ndarray, p: _Tree) -> np.ndarray:
    # Biased variance over the last axis; flax's E[x^2]-E[x]^2 is the same function.
    D = x.shape[-1]
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    scale, bias = (_expect(p(n), (D,), p.prefix + n) for n in ("scale", "bias"))
    out: np.ndarray = (x - mean) / np.sqrt(var + _LN_EPS) * scale + bias
    return out


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    # flax's nn.gelu defaults to approximate=True; exact erf moves the logits by ~3e-4.
    y: np.ndarray = 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))
    return y


def _dense(x: np.ndarray, p: _Tree) -> np.ndarray:
    """flax Dense: ``x @ kernel + bias`` with kernel ``(in, out)``."""
    kernel = _expect(p("kernel"), (x.shape[-1], None), p.prefix + "kernel")
    out: np.ndarray = x @ kernel + _expect(p("bias"), (kernel.shape[1],), p.prefix + "bias")
    return out


def _mlp(x: np.ndarray, p: _Tree) -> np.ndarray:
    h = _gelu_tanh(_dense(x, p.child("Dense_0")))  # (B, N, M)
    return _dense(h, p.child("Dense_1"))  # (B, N, D)


def _attention(q_in: np.ndarray, kv_in: np.ndarray, p: _Tree) -> np.ndarray:
    """flax MultiHeadDotProductAttention: ``(B, Nq, D), (B, N, D) -> (B, Nq, D)``."""
    D = q_in.shape[-1]
    _, H, hd = _expect(p("query/kernel"), (D, None, None), p.prefix + "query/kernel").shape
    proj = {}
    for name, inputs in (("query", q_in), ("key", kv_in), ("value", kv_in)):
        w = _expect(p(f"{name}/kernel"), (D, H, hd), f"{p.prefix}{name}/kernel")
        b = _expect(p(f"{name}/bias"), (H, hd), f"{p.prefix}{name}/bias")
        proj[name] = np.einsum("bnd,dhk->bnhk", inputs, w, optimize=True) + b  # (B, N, H, hd)
    q = proj["query"] / math.sqrt(hd)  # the head dim, not D; applied to q before q.k as flax does
    logits = np.einsum("bqhk,bnhk->bhqn", q, proj["key"], optimize=True)  # (B, H, Nq, N)
    attn = np.exp(logits - logits.max(-1, keepdims=True))
    attn = attn / attn.sum(-1, keepdims=True)  # softmax over keys; no mask
    o = np.einsum("bhqn,bnhk->bqhk", attn, proj["value"], optimize=True)  # (B, Nq, H, hd)
    out = _expect(p("out/kernel"), (H, hd, D), p.prefix + "out/kernel")
    bias = _expect(p("out/bias"), (D,), p.prefix + "out/bias")
    y: np.ndarray = np.einsum("bqhk,hkd->bqd", o, out, optimize=True) + bias
    return y


def _sincos2d(gh: int, gw: int, dim: int) -> np.ndarray:
    """big_vision's ``posemb_sincos_2d`` table ``(1, gh * gw, dim)`` (big-vision-format §4.2)."""
    if dim % 4 or dim < 8:
        raise ValueError(f"sincos2d position embeddings need a width divisible by 4 and >= 8, "
                         f"got {dim}")
    q = dim // 4
    omega = 1.0 / 10000.0 ** (np.arange(q) / (q - 1))  # exponent runs 0..1 inclusive
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    x = cols.reshape(-1, 1) * omega  # (N, q): column coordinate, first half
    y = rows.reshape(-1, 1) * omega  # (N, q): row coordinate, second half
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)[None]


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    # TF/lax "SAME": out = ceil(in / s); the odd pixel goes after (7x7/2 on 224 pads (2, 3)).
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: np.ndarray, kernel: int, stride: int, value: float) -> np.ndarray:
    """Pad ``(B, H, W, C)`` as TF "SAME" does for a square kernel."""
    pads = [(0, 0), _same_padding(x.shape[1], kernel, stride),
            _same_padding(x.shape[2], kernel, stride), (0, 0)]
    return np.pad(x, pads, constant_values=value)


def _standardize(kernel: np.ndarray) -> np.ndarray:
    """Weight standardisation of an HWIO kernel per output channel: (w - mean) / (std + eps)."""
    w = kernel - kernel.mean(axis=(0, 1, 2), keepdims=True)
    # population std (ddof=0)
    out: np.ndarray = w / (w.std(axis=(0, 1, 2), keepdims=True) + _WS_EPS)
    return out


def _std_conv(x: np.ndarray, p: _Tree, name: str, stride: int) -> np.ndarray:
    """vit_jax StdConv ``p/name``: standardised square HWIO kernel, SAME padding, no bias."""
    kernel = _expect(p(f"{name}/kernel"), (None, None, x.shape[-1], None), p.prefix + name)
    k = kernel.shape[0]
    if kernel.shape[1] != k:
        raise ValueError(f"{p.prefix}{name}/kernel is not square: {kernel.shape}")
    win = sliding_window_view(_pad_same(x, k, stride, 0.0), (k, k), axis=(1, 2))
    win = win[:, ::stride, ::stride]  # (B, oh, ow, I, k, k)
    return np.tensordot(win, _standardize(kernel).transpose(2, 0, 1, 3), axes=3)  # (B, oh, ow, O)


def _max_pool_same(x: np.ndarray) -> np.ndarray:
    # 3x3/2 with SAME padding by -inf, so the padding never wins the max.
    win = sliding_window_view(_pad_same(x, 3, 2, -np.inf), (3, 3), axis=(1, 2))
    out: np.ndarray = win[:, ::2, ::2].max(axis=(-2, -1))  # (B, ceil(H/2), ceil(W/2), C)
    return out


def _group_norm(x: np.ndarray, p: _Tree) -> np.ndarray:
    # 32 contiguous channel groups (channel c in group c // (C/32)); scale/bias are (1,1,1,C) in
    # published files and (C,) in Linen ones.
    B, H, W, C = x.shape
    if C % _GN_GROUPS:
        raise ValueError(f"GroupNorm {p.prefix!r} needs channels divisible by 32, got {C}")
    g = x.reshape(B, H, W, _GN_GROUPS, C // _GN_GROUPS)
    g = (g - g.mean((1, 2, 4), keepdims=True)) / np.sqrt(g.var((1, 2, 4), keepdims=True) + _GN_EPS)
    scale = _expect(p("scale").reshape(-1), (C,), p.prefix + "scale")
    out: np.ndarray = (g.reshape(B, H, W, C) * scale
                       + _expect(p("bias").reshape(-1), (C,), p.prefix + "bias"))
    return out


def _conv_gn(x: np.ndarray, unit: _Tree, part: str, stride: int = 1) -> np.ndarray:
    """``gn{part}(conv{part}(x))`` of a bottleneck unit."""
    return _group_norm(_std_conv(x, unit, f"conv{part}", stride), unit.child(f"gn{part}"))


def _resnet(x: np.ndarray, root: _Tree) -> np.ndarray:
    """The hybrid's ResNet (vit_jax models_resnet): post-activation bottlenecks, GN + WS."""
    x = np.maximum(_group_norm(_std_conv(x, root, "conv_root", 2), root.child("gn_root")), 0.0)
    x = _max_pool_same(x)
    for s, stage in enumerate(_numbered(root.children(), r"block(\d+)", 1, "ResNet stages"), 1):
        units = _numbered(root.child(stage).children(), r"unit(\d+)", 1, f"units of {stage}")
        for u, name in enumerate(units, 1):
            unit = root.child(stage).child(name)
            stride = 2 if s >= 2 and u == 1 else 1  # ResNet v1.5: the stride sits on conv2
            residual = _conv_gn(x, unit, "_proj", stride) if "conv_proj" in unit else x
            y = np.maximum(_conv_gn(x, unit, "1"), 0.0)
            y = np.maximum(_conv_gn(y, unit, "2", stride), 0.0)
            y = _conv_gn(y, unit, "3")
            if residual.shape != y.shape:
                raise ValueError(f"{unit.prefix} maps {residual.shape} to {y.shape} but has no "
                                 "conv_proj")
            x = np.maximum(residual + y, 0.0)
    return x


# --- the model -------------------------------------------------------------------------------

def _encoder_blocks(root: _Tree) -> list[_Tree]:
    """One tree per encoder block, from ``encoderblock_{i}`` or the scanned ``encoderblock``."""
    enc = root.child("Transformer")
    names = enc.children()
    looped = _numbered(names, r"encoderblock_(\d+)", 0, "encoder blocks")
    if "encoderblock" in names:
        if looped:
            raise ValueError("checkpoint has both scanned and per-block encoder weights")
        depths = {a.shape[0] if a.ndim else None for k, a in root.arrays.items()
                  if k.startswith("Transformer/encoderblock/")}
        if len(depths) != 1 or None in depths:
            raise ValueError(f"scanned encoder arrays disagree on the depth axis: {depths}")
        depth = depths.pop()
        assert depth is not None  # a None depth was rejected just above
        return [enc.child("encoderblock", index=i) for i in range(depth)]
    if not looped:
        raise ValueError("checkpoint has no Transformer/encoderblock_* keys")
    return [enc.child(name) for name in looped]


def _block_parts(block: _Tree) -> tuple[_Tree, _Tree, _Tree, _Tree]:
    """(pre-attention LN, attention, pre-MLP LN, MLP) of a block, published or Linen numbering.

    Published files number siblings across classes (LayerNorm_0, MultiHeadDotProductAttention_1,
    LayerNorm_2, MlpBlock_3), Linen per class (LayerNorm_0, ..._0, LayerNorm_1, MlpBlock_0); in
    both, the LayerNorms in numeric order are pre-attention then pre-MLP.
    """
    found: dict[str, list[tuple[int, str]]] = {part: [] for part in _BLOCK_PARTS}
    for name in block.children():
        m = re.fullmatch(r"(\w+)_(\d+)", name)
        if m is None or m[1] not in found:
            raise ValueError(f"unexpected module {block.prefix}{name} in an encoder block")
        found[m[1]].append((int(m[2]), name))
    if [len(found[part]) for part in _BLOCK_PARTS] != [2, 1, 1]:
        raise ValueError(f"{block.prefix} needs two LayerNorm_*, one MultiHeadDotProductAttention_*"
                         f" and one MlpBlock_*; it has {sorted(block.children())}")
    (_, ln1), (_, ln2) = sorted(found["LayerNorm"])
    attn, mlp = found["MultiHeadDotProductAttention"][0][1], found["MlpBlock"][0][1]
    return block.child(ln1), block.child(attn), block.child(ln2), block.child(mlp)


def _position_table(root: _Tree, posemb: str | None, gh: int, gw: int, D: int) -> np.ndarray:
    """The position table ``(1, rows, D)``: learned if the checkpoint has one, else sincos2d."""
    keys = [k for k in ("Transformer/posembed_input/pos_embedding", "Transformer/pos_embedding",
                        "pos_embedding") if k in root.arrays]
    if posemb not in (None, "learn", "sincos2d"):
        raise ValueError(f"posemb must be None, 'learn' or 'sincos2d', got {posemb!r}")
    if len(keys) > 1:
        raise ValueError(f"checkpoint has several position tables: {keys}")
    if posemb == "learn" and not keys:
        raise ValueError("posemb='learn' but the checkpoint has no pos_embedding")
    if posemb == "sincos2d" and keys:
        raise ValueError(f"posemb='sincos2d' but the checkpoint has a learned table {keys[0]!r}")
    if not keys:
        return _sincos2d(gh, gw, D)
    return _expect(root(keys[0]), (1, None, D), keys[0])


def _tokens(x: np.ndarray, root: _Tree, posemb: str | None) -> np.ndarray:
    """Patch embedding, position table and cls token: ``(B, H, W, C) -> (B, N (+1), D)``."""
    kernel = root("embedding/kernel")
    ph, pw, C, D = _expect(kernel, (None, None, x.shape[-1], None), "embedding/kernel").shape
    B, gh, gw = x.shape[0], x.shape[1] // ph, x.shape[2] // pw  # VALID: remainders are dropped
    if not gh or not gw:
        raise ValueError(f"input {x.shape[1:3]} is smaller than the patch {(ph, pw)}")
    x = x[:, :gh * ph, :gw * pw].reshape(B, gh, ph, gw, pw, C)  # (B, gh, ph, gw, pw, C)
    x = np.einsum("bgphqc,pqcd->bghd", x, kernel, optimize=True)  # (B, gh, gw, D)
    x = x.reshape(B, gh * gw, D) + _expect(root("embedding/bias"), (D,), "embedding/bias")

    # A table with one row per patch is added before the cls concat (big_vision); one with an
    # extra first row is added after it (vision_transformer). Both are the same function, with
    # cls_bv = cls + pe[0] and pe_bv = pe[1:].
    pos, has_cls = _position_table(root, posemb, gh, gw, D), "cls" in root
    if pos.shape[1] not in (gh * gw, gh * gw + has_cls):
        raise ValueError(f"position table has {pos.shape[1]} rows for a {gh}x{gw} grid"
                         f"{' plus cls' if has_cls else ''}")
    if pos.shape[1] == gh * gw:
        x = x + pos
    if has_cls:
        cls = np.broadcast_to(_expect(root("cls"), (1, 1, D), "cls"), (B, 1, D))
        x = np.concatenate([cls, x], axis=1)  # (B, 1 + N, D)
    if pos.shape[1] != gh * gw:
        x = x + pos
    return x


def _pool(enc: np.ndarray, root: _Tree) -> np.ndarray:
    """``(B, N, D) -> (B, D)``: cls token, MAP head, or the mean of all tokens."""
    if "cls" in root:
        return enc[:, 0]
    if "MAPHead_0" in root:  # big_vision §4.1: no LN before, no residual around the attention
        head = root.child("MAPHead_0")
        B, _, D = enc.shape
        probe = np.broadcast_to(_expect(head("probe"), (1, 1, D), "MAPHead_0/probe"), (B, 1, D))
        x = _attention(probe, enc, head.child("MultiHeadDotProductAttention_0"))  # (B, 1, D)
        x = x + _mlp(_layer_norm(x, head.child("LayerNorm_0")), head.child("MlpBlock_0"))
        pooled: np.ndarray = x[:, 0]
        return pooled
    # gap: mean(encoder_norm(x)), not timm's fc_norm(mean(x))
    gap: np.ndarray = enc.mean(axis=1)
    return gap


def jax_vit_forward(params: Mapping[str, np.ndarray], images: np.ndarray, *,
                    posemb: str | None = None) -> dict[str, np.ndarray]:
    """Run Google's ViT (vision_transformer or big_vision, eval mode) in float64 NumPy.

    The model is read off the arrays: width, heads and head dim from the ``(D, H, hd)`` query
    kernel, the patch from ``embedding/kernel``, a hybrid ResNet from ``conv_root``, the pooling
    from ``cls`` (token 0), ``MAPHead_0/probe`` (MAP) or neither (mean of all tokens). Every key
    must be used; a leftover key raises rather than being silently ignored.

    Args:
        params: flat arrays keyed by ``/``-joined paths relative to the model root (container
            prefixes such as ``params/`` or ``opt/target/`` already removed), in the published,
            Linen or big_vision (scanned, bf16 as ``V2``) layout.
        images: ``(B, H, W, C)`` NHWC images, already normalised.
        posemb: ``None`` to infer (a stored table means learned, none means sincos2d), or
            ``"learn"`` / ``"sincos2d"`` to insist on one.

    Returns:
        float64 arrays: ``"encoder_out"`` ``(B, N, D)`` after ``encoder_norm``, ``"head_input"``
        ``(B, D)`` after pooling, ``"pre_logits"`` ``(B, R)`` after the tanh representation layer
        (equal to ``head_input`` without one) and, only when ``head`` exists, ``"logits"``
        ``(B, C)``.

    Raises:
        ValueError: a key is missing or unused, or shapes are inconsistent.
    """
    arrays = {str(k): _to_float64(v) for k, v in params.items()}
    used: set[str] = set()
    root = _Tree(arrays, used)
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"images must be (B, H, W, C), got shape {x.shape}")
    if "cls" in root and "MAPHead_0" in root:
        raise ValueError("checkpoint has both a cls token and a MAP head")

    if "conv_root" in root:
        x = _resnet(x, root)
    x = _tokens(x, root, posemb)  # (B, N (+1), D)
    for block in _encoder_blocks(root):
        ln1, attn, ln2, mlp = _block_parts(block)
        y = _layer_norm(x, ln1)
        x = x + _attention(y, y, attn)
        x = x + _mlp(_layer_norm(x, ln2), mlp)
    x = _layer_norm(x, root.child("Transformer/encoder_norm"))  # all tokens, before pooling
    out = {"encoder_out": x, "head_input": _pool(x, root)}
    out["pre_logits"] = out["head_input"]
    if "pre_logits" in root:  # the representation layer
        out["pre_logits"] = np.tanh(_dense(out["head_input"], root.child("pre_logits")))
    if "head" in root:
        out["logits"] = _dense(out["pre_logits"], root.child("head"))

    unused = sorted(set(arrays) - used)
    if unused:
        raise ValueError(f"{len(unused)} checkpoint keys are not part of the model: {unused[:8]}")
    return out
