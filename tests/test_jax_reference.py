"""The float64 NumPy reference of Google's ViT, checked against the two format documents.

Every expected value here is computed by the test itself, with explicit loops or the documents'
worked facts, so that a test does not re-run the code it checks.
"""

from __future__ import annotations

import ast
import io
import math
from pathlib import Path

import numpy as np
import pytest

from vitzoo.reference import jax_numpy as jax_reference
from vitzoo.reference.jax_numpy import (
    _group_norm,
    _max_pool_same,
    _same_padding,
    _sincos2d,
    _standardize,
    _std_conv,
    _to_float64,
    _Tree,
    jax_vit_forward,
)

TIGHT = dict(atol=1e-12, rtol=0)


# --- random checkpoints ----------------------------------------------------------------------

def _attn_params(rng, prefix: str, D: int, H: int) -> dict[str, np.ndarray]:
    p = {f"{prefix}/{n}/kernel": rng.normal(0, 0.4, (D, H, D // H)) for n in ("query", "key",
                                                                                "value")}
    p.update({f"{prefix}/{n}/bias": rng.normal(0, 0.1, (H, D // H)) for n in ("query", "key",
                                                                              "value")})
    p[f"{prefix}/out/kernel"] = rng.normal(0, 0.4, (H, D // H, D))
    p[f"{prefix}/out/bias"] = rng.normal(0, 0.1, (D,))
    return p


def _ln_params(rng, prefix: str, D: int) -> dict[str, np.ndarray]:
    return {f"{prefix}/scale": 1 + rng.normal(0, 0.2, (D,)),
            f"{prefix}/bias": rng.normal(0, 0.1, (D,))}


def _mlp_params(rng, prefix: str, D: int, M: int) -> dict[str, np.ndarray]:
    return {f"{prefix}/Dense_0/kernel": rng.normal(0, 0.4, (D, M)),
            f"{prefix}/Dense_0/bias": rng.normal(0, 0.1, (M,)),
            f"{prefix}/Dense_1/kernel": rng.normal(0, 0.4, (M, D)),
            f"{prefix}/Dense_1/bias": rng.normal(0, 0.1, (D,))}


def _vit(seed: int = 0, *, D: int = 16, H: int = 2, M: int = 32, depth: int = 2, patch: int = 4,
         cin: int = 3, grid: tuple[int, int] = (2, 3), pool: str = "tok", pos: bool = True,
         rep: int | None = None, classes: int | None = 5) -> dict[str, np.ndarray]:
    """A big_vision (Linen) checkpoint: ``pos_embedding`` without a cls row, looped blocks."""
    rng = np.random.default_rng(seed)
    p = {"embedding/kernel": rng.normal(0, 0.3, (patch, patch, cin, D)),
         "embedding/bias": rng.normal(0, 0.1, (D,))}
    if pos:
        p["pos_embedding"] = rng.normal(0, 0.5, (1, grid[0] * grid[1], D))
    if pool == "tok":
        p["cls"] = rng.normal(0, 0.5, (1, 1, D))
    for i in range(depth):
        b = f"Transformer/encoderblock_{i}"
        p |= _ln_params(rng, f"{b}/LayerNorm_0", D) | _ln_params(rng, f"{b}/LayerNorm_1", D)
        p |= _attn_params(rng, f"{b}/MultiHeadDotProductAttention_0", D, H)
        p |= _mlp_params(rng, f"{b}/MlpBlock_0", D, M)
    p |= _ln_params(rng, "Transformer/encoder_norm", D)
    if pool == "map":
        p["MAPHead_0/probe"] = rng.normal(0, 0.5, (1, 1, D))
        p |= _attn_params(rng, "MAPHead_0/MultiHeadDotProductAttention_0", D, H)
        p |= _ln_params(rng, "MAPHead_0/LayerNorm_0", D) | _mlp_params(rng, "MAPHead_0/MlpBlock_0",
                                                                         D, M)
    width = D
    if rep:
        p |= {"pre_logits/kernel": rng.normal(0, 0.4, (D, rep)),
              "pre_logits/bias": rng.normal(0, 0.1, (rep,))}
        width = rep
    if classes:
        p |= {"head/kernel": rng.normal(0, 0.4, (width, classes)),
              "head/bias": rng.normal(0, 0.1, (classes,))}
    return p


def _published(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same weights under the pre-Linen names of the released vision_transformer files."""
    renames = {"/MultiHeadDotProductAttention_0/": "/MultiHeadDotProductAttention_1/",
               "/LayerNorm_1/": "/LayerNorm_2/", "/MlpBlock_0/": "/MlpBlock_3/"}
    out = {}
    for key, value in p.items():
        if key.startswith("Transformer/encoderblock_"):
            for old, new in renames.items():
                key = key.replace(old, new)
        out[key] = value
    return out


def _scanned(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same weights stacked along a leading depth axis, as big_vision's scan=True stores."""
    out = {k: v for k, v in p.items() if not k.startswith("Transformer/encoderblock_")}
    children = {k.split("/", 2)[2] for k in p if k.startswith("Transformer/encoderblock_0/")}
    depth = len({k.split("/")[1] for k in p if k.startswith("Transformer/encoderblock_")})
    for child in children:
        out[f"Transformer/encoderblock/{child}"] = np.stack(
            [p[f"Transformer/encoderblock_{i}/{child}"] for i in range(depth)])
    return out


def _images(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape)


# --- loop implementations of the documents' formulas -----------------------------------------

def _loop_standardize(kernel: np.ndarray) -> np.ndarray:
    out = np.empty_like(kernel)
    for o in range(kernel.shape[-1]):
        w = kernel[..., o].ravel()
        mean = sum(w) / len(w)
        std = math.sqrt(sum((a - mean) ** 2 for a in w) / len(w))
        out[..., o] = (kernel[..., o] - mean) / (std + 1e-5)
    return out


def _loop_std_conv(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    k = kernel.shape[0]
    (top, bottom), (left, right) = (_loop_same(x.shape[1], k, stride),
                                    _loop_same(x.shape[2], k, stride))
    x = np.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)])
    w = _loop_standardize(kernel)
    oh, ow = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, kernel.shape[-1]))
    for i in range(oh):
        for j in range(ow):
            window = x[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            out[:, i, j] = np.einsum("bhwi,hwio->bo", window, w)
    return out


def _loop_same(size: int, k: int, s: int) -> tuple[int, int]:
    # The smallest total padding that gives ceil(size / s) outputs, the odd pixel after.
    out = -(-size // s)
    total = next(t for t in range(k + 1) if (size + t - k) // s + 1 >= out)
    return total // 2, total - total // 2


def _loop_group_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    per = x.shape[-1] // 32
    for b in range(x.shape[0]):
        for g in range(32):
            chans = slice(g * per, (g + 1) * per)
            v = x[b, :, :, chans]
            out[b, :, :, chans] = (v - v.mean()) / math.sqrt(v.var() + 1e-6)
    return out * scale.reshape(-1) + bias.reshape(-1)


def _loop_max_pool(x: np.ndarray) -> np.ndarray:
    (top, bottom), (left, right) = _loop_same(x.shape[1], 3, 2), _loop_same(x.shape[2], 3, 2)
    x = np.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)], constant_values=-np.inf)
    oh, ow = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    return np.array([[[x[b, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max((0, 1)) for j in range(ow)]
                      for i in range(oh)] for b in range(x.shape[0])])


def _ln(v: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = sum(v) / len(v)
    var = sum((a - mean) ** 2 for a in v) / len(v)
    return (v - mean) / math.sqrt(var + 1e-6) * scale + bias


def _gelu_tanh(v: np.ndarray) -> np.ndarray:
    return np.array([0.5 * a * (1 + math.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a ** 3)))
                     for a in v])


def _doc_sincos(r: int, c: int, D: int) -> list[float]:
    q = D // 4
    omega = [1 / 10000 ** (j / (q - 1)) for j in range(q)]
    return ([math.sin(c * w) for w in omega] + [math.cos(c * w) for w in omega]
            + [math.sin(r * w) for w in omega] + [math.cos(r * w) for w in omega])


def _hybrid(seed: int, *, stages: tuple[int, ...], gn_shape: str, D: int = 16) -> dict:
    """A hybrid with width 32: stage s has F = 32 * 2**(s-1) and the given number of units."""
    rng = np.random.default_rng(seed)

    def gn(prefix: str, c: int) -> dict[str, np.ndarray]:
        shape = (1, 1, 1, c) if gn_shape == "published" else (c,)
        return {f"{prefix}/scale": 1 + rng.normal(0, 0.2, shape),
                f"{prefix}/bias": rng.normal(0, 0.2, shape)}

    p = {"conv_root/kernel": rng.normal(size=(7, 7, 3, 32))} | gn("gn_root", 32)
    cin = 32
    for s, units in enumerate(stages, 1):
        f = 32 * 2 ** (s - 1)
        for u in range(1, units + 1):
            pre = f"block{s}/unit{u}"
            p |= {f"{pre}/conv1/kernel": rng.normal(size=(1, 1, cin, f)),
                  f"{pre}/conv2/kernel": rng.normal(size=(3, 3, f, f)),
                  f"{pre}/conv3/kernel": rng.normal(size=(1, 1, f, 4 * f))}
            p |= gn(f"{pre}/gn1", f) | gn(f"{pre}/gn2", f) | gn(f"{pre}/gn3", 4 * f)
            if u == 1:
                p |= {f"{pre}/conv_proj/kernel": rng.normal(size=(1, 1, cin, 4 * f))}
                p |= gn(f"{pre}/gn_proj", 4 * f)
            cin = 4 * f
    vit = _vit(seed, D=D, patch=1, cin=cin, grid=(4, 4))
    vit.pop("pos_embedding")
    return p | vit | {"Transformer/posembed_input/pos_embedding":
                      rng.normal(size=(1, 17, D))}


def _loop_resnet(p: dict, x: np.ndarray, stages: tuple[int, ...]) -> np.ndarray:
    def gn(y, name):
        return _loop_group_norm(y, p[f"{name}/scale"], p[f"{name}/bias"])

    x = _loop_max_pool(np.maximum(gn(_loop_std_conv(x, p["conv_root/kernel"], 2), "gn_root"), 0))
    for s, units in enumerate(stages, 1):
        for u in range(1, units + 1):
            pre, stride = f"block{s}/unit{u}", 2 if s >= 2 and u == 1 else 1
            res = x
            if u == 1:
                res = gn(_loop_std_conv(x, p[f"{pre}/conv_proj/kernel"], stride), f"{pre}/gn_proj")
            y = np.maximum(gn(_loop_std_conv(x, p[f"{pre}/conv1/kernel"], 1), f"{pre}/gn1"), 0)
            y = np.maximum(gn(_loop_std_conv(y, p[f"{pre}/conv2/kernel"], stride), f"{pre}/gn2"), 0)
            y = gn(_loop_std_conv(y, p[f"{pre}/conv3/kernel"], 1), f"{pre}/gn3")
            x = np.maximum(res + y, 0)
    return x


# --- building blocks -------------------------------------------------------------------------

def test_module_imports_only_numpy_and_the_standard_library():
    tree = ast.parse(Path(jax_reference.__file__).read_text())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert names <= {"__future__", "collections", "math", "re", "numpy"}
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))


def test_sincos2d_matches_the_worked_facts():
    D, q = 8, 2
    table = _sincos2d(2, 3, D)[0]  # 2x3 grid: token t = r * 3 + c
    assert table.shape == (6, D)
    assert table[1, 0] == pytest.approx(math.sin(1))  # r=0, c=1: column half first
    assert table[3, D // 2] == pytest.approx(math.sin(1))  # r=1, c=0: row half second
    for r in range(2):
        for c in range(3):
            np.testing.assert_allclose(table[r * 3 + c], _doc_sincos(r, c, D), **TIGHT)
    assert table[1, q - 1] == pytest.approx(math.sin(1e-4))  # last frequency is 1/10000
    for bad in (4, 6):
        with pytest.raises(ValueError, match="divisible by 4"):
            _sincos2d(2, 2, bad)


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (224, 7, 2, (2, 3)), (112, 3, 2, (0, 1)), (56, 3, 1, (1, 1)), (56, 1, 2, (0, 0)),
    (15, 7, 2, (3, 3)), (15, 3, 2, (1, 1)),
])
def test_same_padding_is_tensorflows(size, kernel, stride, expected):
    assert _same_padding(size, kernel, stride) == expected == _loop_same(size, kernel, stride)


def test_weight_standardisation_adds_eps_to_the_std():
    kernel = np.random.default_rng(0).normal(0, 0.01, (3, 3, 4, 5))
    np.testing.assert_allclose(_standardize(kernel), _loop_standardize(kernel), **TIGHT)
    w = kernel.reshape(-1, 5)
    timm_form = (w - w.mean(0)) / np.sqrt(w.var(0) + 1e-8)
    assert np.abs(_standardize(kernel).reshape(-1, 5) - timm_form).max() > 1e-4


@pytest.mark.parametrize("size, k, stride", [(9, 3, 2), (8, 7, 2), (6, 3, 1), (7, 1, 2)])
def test_std_conv_is_same_padded_standardised_convolution(size, k, stride):
    rng = np.random.default_rng(size + k)
    x, kernel = rng.normal(size=(2, size, size + 1, 3)), rng.normal(size=(k, k, 3, 4))
    out = _std_conv(x, _Tree({"c/kernel": kernel}, set()), "c", stride)
    assert out.shape == (2, -(-size // stride), -(-(size + 1) // stride), 4)
    np.testing.assert_allclose(out, _loop_std_conv(x, kernel, stride), **TIGHT)


def test_max_pool_same_pads_with_minus_infinity():
    x = -1 - np.random.default_rng(0).uniform(size=(1, 6, 7, 2))  # zero padding would win
    out = _max_pool_same(x)
    assert out.shape == (1, 3, 4, 2) and np.all(out < 0)
    np.testing.assert_array_equal(out, _loop_max_pool(x))


@pytest.mark.parametrize("gn_shape", [(64,), (1, 1, 1, 64)])
def test_group_norm_uses_32_contiguous_groups(gn_shape):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 64)) * np.arange(1, 65)  # per-channel scales tell groups apart
    scale, bias = rng.normal(size=gn_shape), rng.normal(size=gn_shape)
    gn = _Tree({"gn/scale": scale, "gn/bias": bias}, set(), "gn/")
    np.testing.assert_allclose(_group_norm(x, gn), _loop_group_norm(x, scale, bias), **TIGHT)


def test_bfloat16_void_arrays_decode_exactly():
    values = np.array([1.0, -2.5, 0.15625, 3.0e38, -1.1754944e-38, 0.0], dtype=np.float32)
    values = (values.view(np.uint32) & 0xFFFF0000).view(np.float32)  # exactly representable
    upper = (values.view(np.uint32) >> 16).astype("<u2")
    buf = io.BytesIO()
    np.savez(buf, w=upper.view("V2"))  # what np.savez writes for an ml_dtypes.bfloat16 array
    stored = np.load(io.BytesIO(buf.getvalue()), allow_pickle=False)["w"]
    assert stored.dtype.kind == "V" and stored.dtype.itemsize == 2
    decoded = _to_float64(stored)
    assert decoded.dtype == np.float64
    np.testing.assert_array_equal(decoded, values.astype(np.float64))


def test_bfloat16_checkpoint_gives_the_float32_result():
    p = {k: (v.astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32)
         for k, v in _vit(3).items()}
    bf16 = {k: (v.view(np.uint32) >> 16).astype("<u2").view("V2") for k, v in p.items()}
    x = _images(0, (2, 8, 12, 3))
    for name, value in jax_vit_forward(bf16, x).items():
        np.testing.assert_array_equal(value, jax_vit_forward(p, x)[name])


# --- the model -------------------------------------------------------------------------------

def test_one_block_one_head_forward_by_hand():
    D, M, ph = 4, 8, 2
    p = _published(_vit(7, D=D, H=1, M=M, depth=1, patch=ph, grid=(2, 3), rep=3, classes=2))
    cls, pe_bv = p.pop("cls"), p.pop("pos_embedding")
    pe = np.concatenate([np.zeros((1, 1, D)), pe_bv], axis=1)
    pe[0, 0] = np.random.default_rng(8).normal(size=D)  # a cls row, added after the concat
    p |= {"cls": cls, "Transformer/posembed_input/pos_embedding": pe}
    img = _images(1, (1, 5, 7, 3))  # the last row and column are dropped (VALID)
    out = jax_vit_forward(p, img)

    tokens = [cls[0, 0] + pe[0, 0]]
    for r in range(2):
        for c in range(3):
            e = p["embedding/bias"].copy()
            for i in range(ph):
                for j in range(ph):
                    for ch in range(3):
                        e += img[0, r * ph + i, c * ph + j, ch] * p["embedding/kernel"][i, j, ch]
            tokens.append(e + pe[0, 1 + r * 3 + c])
    x = np.array(tokens)
    b = "Transformer/encoderblock_0"
    a = f"{b}/MultiHeadDotProductAttention_1"
    y = [_ln(t, p[f"{b}/LayerNorm_0/scale"], p[f"{b}/LayerNorm_0/bias"]) for t in x]
    q = [t @ p[f"{a}/query/kernel"][:, 0] + p[f"{a}/query/bias"][0] for t in y]
    k = [t @ p[f"{a}/key/kernel"][:, 0] + p[f"{a}/key/bias"][0] for t in y]
    v = [t @ p[f"{a}/value/kernel"][:, 0] + p[f"{a}/value/bias"][0] for t in y]
    attn = []
    for i in range(len(x)):
        scores = [(q[i] / math.sqrt(D)) @ k[j] for j in range(len(x))]  # hd = D with one head
        w = [math.exp(s - max(scores)) for s in scores]
        o = sum(wj / sum(w) * vj for wj, vj in zip(w, v, strict=True))
        attn.append(o @ p[f"{a}/out/kernel"][0] + p[f"{a}/out/bias"])
    x = x + np.array(attn)
    m = f"{b}/MlpBlock_3"
    for i in range(len(x)):
        h = _ln(x[i], p[f"{b}/LayerNorm_2/scale"], p[f"{b}/LayerNorm_2/bias"])
        h = _gelu_tanh(h @ p[f"{m}/Dense_0/kernel"] + p[f"{m}/Dense_0/bias"])
        x[i] = x[i] + h @ p[f"{m}/Dense_1/kernel"] + p[f"{m}/Dense_1/bias"]
    enc = np.array([_ln(t, p["Transformer/encoder_norm/scale"], p["Transformer/encoder_norm/bias"])
                    for t in x])
    pre = np.tanh(enc[0] @ p["pre_logits/kernel"] + p["pre_logits/bias"])
    logits = pre @ p["head/kernel"] + p["head/bias"]

    np.testing.assert_allclose(out["encoder_out"][0], enc, atol=1e-12, rtol=0)
    np.testing.assert_allclose(out["head_input"][0], enc[0], atol=1e-12, rtol=0)
    np.testing.assert_allclose(out["pre_logits"][0], pre, atol=1e-12, rtol=0)
    np.testing.assert_allclose(out["logits"][0], logits, atol=1e-12, rtol=0)


@pytest.mark.parametrize("pool", ["tok", "gap", "map"])
def test_published_linen_and_scanned_layouts_agree(pool):
    linen = _vit(1, pool=pool, depth=3)
    x = _images(2, (2, 8, 12, 3))
    expected = jax_vit_forward(linen, x)
    assert set(expected) == {"encoder_out", "head_input", "pre_logits", "logits"}
    for layout in (_published(linen), _scanned(linen)):
        out = jax_vit_forward(layout, x)
        assert set(out) == set(expected)
        for name in out:
            np.testing.assert_allclose(out[name], expected[name], **TIGHT)


def test_big_vision_table_is_the_published_one_with_the_cls_row_folded():
    pe = np.random.default_rng(5).normal(size=(1, 7, 16))
    vt = _published(_vit(2))
    vt.pop("pos_embedding")
    vt["Transformer/posembed_input/pos_embedding"] = pe
    x = _images(3, (2, 8, 12, 3))
    expected = jax_vit_forward(vt, x)
    for key in ("pos_embedding", "Transformer/pos_embedding"):
        bv = {k: v for k, v in vt.items() if k != "Transformer/posembed_input/pos_embedding"}
        bv |= {"cls": vt["cls"] + pe[:, :1], key: pe[:, 1:]}
        out = jax_vit_forward(bv, x)
        for name in expected:
            np.testing.assert_allclose(out[name], expected[name], atol=1e-12, rtol=0)


def test_gap_averages_all_tokens_after_encoder_norm():
    out = jax_vit_forward(_vit(4, pool="gap", rep=None, classes=None), _images(4, (2, 8, 12, 3)))
    assert out["encoder_out"].shape == (2, 6, 16) and "logits" not in out
    np.testing.assert_allclose(out["head_input"], out["encoder_out"].mean(1), **TIGHT)
    np.testing.assert_array_equal(out["pre_logits"], out["head_input"])  # no representation


def test_map_head_is_probe_attention_then_residual_mlp():
    p = _vit(5, pool="map", H=2, rep=None)
    out = jax_vit_forward(p, _images(5, (2, 8, 12, 3)))
    a, hd = "MAPHead_0/MultiHeadDotProductAttention_0", 8
    for b in range(2):
        enc, heads = out["encoder_out"][b], []
        for h in range(2):  # the probe queries ALL tokens; no LayerNorm before the attention
            q = p["MAPHead_0/probe"][0, 0] @ p[f"{a}/query/kernel"][:, h] + p[f"{a}/query/bias"][h]
            k = enc @ p[f"{a}/key/kernel"][:, h] + p[f"{a}/key/bias"][h]
            v = enc @ p[f"{a}/value/kernel"][:, h] + p[f"{a}/value/bias"][h]
            w = np.exp(k @ q / math.sqrt(hd))
            heads.append((w / w.sum()) @ v @ p[f"{a}/out/kernel"][h])
        x = sum(heads) + p[f"{a}/out/bias"]  # no residual around the attention
        m = "MAPHead_0/MlpBlock_0"
        y = _ln(x, p["MAPHead_0/LayerNorm_0/scale"], p["MAPHead_0/LayerNorm_0/bias"])
        y = _gelu_tanh(y @ p[f"{m}/Dense_0/kernel"] + p[f"{m}/Dense_0/bias"])
        x = x + y @ p[f"{m}/Dense_1/kernel"] + p[f"{m}/Dense_1/bias"]
        np.testing.assert_allclose(out["head_input"][b], x, **TIGHT)
        np.testing.assert_allclose(out["logits"][b], x @ p["head/kernel"] + p["head/bias"], **TIGHT)


def test_missing_table_means_sincos2d_added_before_the_cls_token():
    p = _vit(6, pos=False)
    x = _images(6, (1, 8, 12, 3))
    out = jax_vit_forward(p, x)
    table = np.array([_doc_sincos(r, c, 16) for r in range(2) for c in range(3)])  # (N, D)
    explicit = jax_vit_forward(p | {"pos_embedding": table[None]}, x, posemb="learn")
    np.testing.assert_allclose(out["logits"], explicit["logits"], **TIGHT)
    np.testing.assert_allclose(jax_vit_forward(p, x, posemb="sincos2d")["logits"], out["logits"],
                               **TIGHT)
    with pytest.raises(ValueError, match="no pos_embedding"):
        jax_vit_forward(p, x, posemb="learn")
    with pytest.raises(ValueError, match="learned table"):
        jax_vit_forward(p | {"pos_embedding": table[None]}, x, posemb="sincos2d")


def test_tiny_hybrid_is_the_post_activation_resnet_with_same_padding():
    stages = (2, 1)  # block1: unit1 with projection, unit2 identity; block2: stride 2 on conv2
    p = _hybrid(0, stages=stages, gn_shape="published")
    x = _images(7, (1, 30, 30, 3))  # SAME: 30 -> 15 (root) -> 8 (pool) -> 8 -> 4 (block2)
    out = jax_vit_forward(p, x)
    assert out["encoder_out"].shape == (1, 1 + 4 * 4, 16)
    features = _loop_resnet(p, x, stages)
    assert features.shape == (1, 4, 4, 256)
    vit = {k: v for k, v in p.items() if not k.startswith(("conv_root", "gn_root", "block"))}
    np.testing.assert_allclose(out["logits"], jax_vit_forward(vit, features)["logits"],
                               atol=1e-10, rtol=0)
    linen = _hybrid(0, stages=stages, gn_shape="linen")
    np.testing.assert_allclose(jax_vit_forward(linen, x)["logits"], out["logits"], **TIGHT)


def test_stem_only_hybrid_goes_from_the_pool_to_the_embedding():
    p = _hybrid(1, stages=(), gn_shape="linen")  # embedding takes the W = 32 stem channels
    x = _images(8, (1, 7, 8, 3))  # 7x8 -> 4x4 (root) -> 2x2 (pool): 4 tokens + cls
    p["Transformer/posembed_input/pos_embedding"] = p["Transformer/posembed_input/pos_embedding"][
        :, :5]
    out = jax_vit_forward(p, x)
    assert out["encoder_out"].shape == (1, 5, 16)
    vit = {k: v for k, v in p.items() if not k.startswith(("conv_root", "gn_root"))}
    np.testing.assert_allclose(out["logits"], jax_vit_forward(vit, _loop_resnet(p, x, ()))[
        "logits"], atol=1e-10, rtol=0)


# --- bad input -------------------------------------------------------------------------------

def _drop(key):
    return lambda p: {k: v for k, v in p.items() if k != key}


@pytest.mark.parametrize("mutate, message", [
    (_drop("Transformer/encoder_norm/scale"), "Transformer/encoder_norm/scale"),
    (_drop("Transformer/encoderblock_1/MultiHeadDotProductAttention_0/key/bias"), "key/bias"),
    (_drop("embedding/kernel"), "embedding/kernel"),
    (lambda p: p | {"pos_embedding": np.zeros((1, 5, 16))}, "5 rows"),
    (lambda p: p | {"cls": np.zeros((1, 2, 16))}, "cls has shape"),
    (lambda p: p | {"Transformer/encoderblock_1/LayerNorm_1/scale": np.ones(8)}, "LayerNorm_1"),
    (lambda p: p | {"Transformer/encoderblock_1/LayerNorm_7/scale": np.ones(16)}, "two LayerNorm"),
    (lambda p: {k.replace("encoderblock_1", "encoderblock_2"): v for k, v in p.items()},
     "numbered 0"),
    (lambda p: p | {"head/kernel": np.zeros((8, 5))}, "head/kernel"),
    (lambda p: p | {"probe": np.zeros((1, 1, 16))}, "not part of the model"),
])
def test_bad_checkpoints_raise_value_error(mutate, message):
    with pytest.raises(ValueError, match=message):
        jax_vit_forward(mutate(_vit(0)), _images(0, (1, 8, 12, 3)))


def test_bad_images_and_scanned_depths_raise_value_error():
    p = _vit(0)
    with pytest.raises(ValueError, match="embedding/kernel"):
        jax_vit_forward(p, _images(0, (1, 8, 12, 4)))  # 4 channels for a 3-channel kernel
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        jax_vit_forward(p, _images(0, (8, 12, 3)))
    with pytest.raises(ValueError, match="posemb must be"):
        jax_vit_forward(p, _images(0, (1, 8, 12, 3)), posemb="sincos")
    with pytest.raises(ValueError, match="both a cls token and a MAP head"):
        jax_vit_forward(p | {"MAPHead_0/probe": np.zeros((1, 1, 16))}, _images(0, (1, 8, 12, 3)))
    scanned = _scanned(p)
    scanned["Transformer/encoderblock/LayerNorm_0/bias"] = np.zeros((3, 16))
    with pytest.raises(ValueError, match="depth"):
        jax_vit_forward(scanned, _images(0, (1, 8, 12, 3)))
