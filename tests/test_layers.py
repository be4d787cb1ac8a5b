"""The layers on their own: patch embedding, attention, MLP, DropPath, LayerScale, Block."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vitzoo import ConfigError, ImageSizeError
from vitzoo.layers import (
    Attention,
    AttentionPool,
    Block,
    DropPath,
    LayerScale,
    Mlp,
    PatchEmbed,
    drop_path,
    sincos_2d_pos_embed,
)


# -- PatchEmbed -----------------------------------------------------------------------------------
def test_patch_embed_tokens_are_row_major_patch_projections():
    embed = PatchEmbed(img_size=(16, 24), patch_size=8, in_chans=3, embed_dim=5)
    x = torch.randn(2, 3, 16, 24)
    tokens = embed(x)
    assert embed.grid_size == (2, 3) and tokens.shape == (2, 6, 5)
    w = embed.proj.weight.reshape(5, -1)
    for r in range(2):
        for c in range(3):
            patch = x[:, :, 8 * r:8 * r + 8, 8 * c:8 * c + 8].reshape(2, -1)
            expected = patch @ w.T + embed.proj.bias
            torch.testing.assert_close(tokens[:, r * 3 + c], expected, atol=1e-5, rtol=0)


def test_patch_embed_drops_the_remainder_like_a_valid_conv():
    embed = PatchEmbed(img_size=20, patch_size=8, embed_dim=4)
    x = torch.randn(1, 3, 20, 20)
    assert embed.grid_size == (2, 2)
    cropped = F.conv2d(x[:, :, :16, :16], embed.proj.weight, embed.proj.bias, stride=8)
    torch.testing.assert_close(embed(x), cropped.flatten(2).transpose(1, 2), atol=0, rtol=0)


@pytest.mark.parametrize("shape, fragment", [
    ((1, 3, 32, 48), "takes 32x32 images, got 32x48; resize the input, create the model "
                     "with img_size=(32, 48) or dynamic_img_size=True"),
    ((1, 1, 32, 32), "takes 3-channel images, got 1 channels; create the model with in_chans=1"),
    ((3, 32, 32), "expected a (batch, channels, height, width) tensor"),
])
def test_patch_embed_rejects_inputs_it_was_not_built_for(shape, fragment):
    embed = PatchEmbed(img_size=32, patch_size=8, embed_dim=4)
    with pytest.raises(ImageSizeError) as err:
        embed(torch.randn(*shape))
    assert fragment in str(err.value)


def test_patch_embed_rejects_a_patch_larger_than_the_image():
    with pytest.raises(ImageSizeError, match="smaller than patch_size"):
        PatchEmbed(img_size=8, patch_size=16)


# -- Attention ------------------------------------------------------------------------------------
def test_sdpa_and_math_paths_agree_to_1e6():
    attn = Attention(64, num_heads=4).eval()
    x = torch.randn(3, 17, 64)
    sdpa = attn(x)
    attn.attn_impl = "math"
    math_out = attn(x)
    torch.testing.assert_close(sdpa, math_out, atol=1e-6, rtol=0)


def test_fused_qkv_matches_multihead_attention_in_proj_layout():
    attn = Attention(32, num_heads=4, attn_impl="math").eval()
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.qkv.weight)
        mha.in_proj_bias.copy_(attn.qkv.bias)
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
    x = torch.randn(2, 9, 32)
    expected, _ = mha(x, x, x, need_weights=False)
    torch.testing.assert_close(attn(x), expected, atol=1e-6, rtol=0)


def test_qkv_rows_are_head_major_as_in_googles_einsum():
    D, H = 24, 3
    hd = D // H
    attn = Attention(D, num_heads=H).eval()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    attn = attn.double()
    w_q, w_k, w_v = attn.qkv.weight.chunk(3)
    b_q, b_k, b_v = attn.qkv.bias.chunk(3)
    # Google's (D, H, hd) kernels: row h*hd + j of the Linear is head h, channel j.
    kq, kk, kv = (w.T.reshape(D, H, hd) for w in (w_q, w_k, w_v))
    q = torch.einsum("bnd,dhk->bnhk", x, kq) + b_q.reshape(H, hd)
    k = torch.einsum("bnd,dhk->bnhk", x, kk) + b_k.reshape(H, hd)
    v = torch.einsum("bnd,dhk->bnhk", x, kv) + b_v.reshape(H, hd)
    a = torch.einsum("bqhk,bnhk->bhqn", q / math.sqrt(hd), k).softmax(-1)
    o = torch.einsum("bhqn,bnhk->bqhk", a, v)
    out = torch.einsum("bqhk,hkd->bqd", o, attn.proj.weight.T.reshape(H, hd, D)) + attn.proj.bias
    torch.testing.assert_close(attn(x), out, atol=1e-12, rtol=0)


def test_forward_with_attn_returns_the_probabilities():
    attn = Attention(16, num_heads=2).eval()
    x = torch.randn(2, 6, 16)
    out, probs = attn.forward_with_attn(x)
    torch.testing.assert_close(out, attn(x), atol=1e-6, rtol=0)
    assert probs.shape == (2, 2, 6, 6)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, 6), atol=1e-6, rtol=0)
    q, k, _ = attn.qkv(x).reshape(2, 6, 3, 2, 8).permute(2, 0, 3, 1, 4)
    torch.testing.assert_close(probs, (q @ k.transpose(-2, -1) / math.sqrt(8)).softmax(-1),
                               atol=1e-6, rtol=0)


def test_attention_rejects_unknown_impl_and_bad_heads():
    with pytest.raises(ConfigError, match="attn_impl='flash'"):
        Attention(16, num_heads=2, attn_impl="flash")
    with pytest.raises(ConfigError, match="not divisible"):
        Attention(10, num_heads=3)


def test_attention_dropout_is_active_only_in_training():
    attn = Attention(16, num_heads=2, attn_drop=0.5)
    x = torch.randn(2, 6, 16)
    attn.eval()
    torch.testing.assert_close(attn(x), attn(x), atol=0, rtol=0)
    attn.train()
    assert not torch.equal(attn(x), attn(x))


# -- Mlp ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_mlp_gelu_variant_matches_its_formula(approximate):
    mlp = Mlp(8, hidden_features=16, act_layer=partial(nn.GELU, approximate=approximate)).double()
    x = torch.randn(4, 8, dtype=torch.float64) * 3
    h = mlp.fc1(x)
    if approximate == "tanh":
        act = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
    else:
        act = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
    torch.testing.assert_close(mlp(x), mlp.fc2(act), atol=1e-12, rtol=0)


def test_gelu_variants_differ_measurably():
    exact = Mlp(8, hidden_features=16)
    tanh = Mlp(8, hidden_features=16, act_layer=partial(nn.GELU, approximate="tanh"))
    tanh.load_state_dict(exact.state_dict())
    x = torch.randn(64, 8) * 3
    assert (exact(x) - tanh(x)).abs().max() > 1e-5


# -- DropPath -------------------------------------------------------------------------------------
def test_drop_path_is_identity_in_eval():
    layer = DropPath(0.5).eval()
    x = torch.randn(8, 4, 3)
    assert layer(x) is x


def test_drop_path_drops_whole_samples_and_preserves_the_expectation():
    x = torch.ones(20_000, 3, 2)
    y = DropPath(0.3).train()(x)
    per_sample = y.reshape(20_000, -1)
    kept = per_sample[:, 0] != 0
    # each sample is either dropped entirely or scaled by 1 / keep
    torch.testing.assert_close(per_sample[kept], torch.full_like(per_sample[kept], 1 / 0.7))
    assert torch.all(per_sample[~kept] == 0)
    assert abs((~kept).float().mean().item() - 0.3) < 0.02
    assert abs(y.mean().item() - 1.0) < 0.02  # E[y] = x


def test_drop_path_without_rescaling_keeps_values():
    x = torch.ones(1000, 2)
    y = drop_path(x, 0.5, training=True, scale_by_keep=False)
    assert set(y.unique().tolist()) <= {0.0, 1.0}


def test_drop_path_rejects_rates_outside_0_1():
    with pytest.raises(ValueError, match="drop_prob"):
        DropPath(1.0)


# -- LayerScale and Block -------------------------------------------------------------------------
def test_layer_scale_multiplies_channels():
    ls = LayerScale(4, init_values=0.1)
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(ls(x), x * 0.1)
    with torch.no_grad():
        ls.gamma.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    torch.testing.assert_close(ls(x), x * torch.tensor([1.0, 2.0, 3.0, 4.0]))


def test_block_is_the_two_pre_norm_residual_equations():
    block = Block(16, num_heads=2, init_values=0.5, act_layer=partial(nn.GELU, approximate="tanh"),
                  norm_layer=partial(nn.LayerNorm, eps=1e-6)).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    x = torch.randn(2, 5, 16)
    ln = lambda t, m: F.layer_norm(t, (16,), m.weight, m.bias, 1e-6)  # noqa: E731
    y = x + block.ls1.gamma * block.attn(ln(x, block.norm1))
    h = block.mlp.fc1(ln(y, block.norm2))
    y = y + block.ls2.gamma * block.mlp.fc2(F.gelu(h, approximate="tanh"))
    torch.testing.assert_close(block(x), y, atol=1e-6, rtol=0)
    out, probs = block.forward_with_attn(x)
    torch.testing.assert_close(out, y, atol=1e-6, rtol=0)
    assert probs.shape == (2, 2, 5, 5)


def test_block_without_layer_scale_has_timm_keys():
    keys = set(Block(8, num_heads=2).state_dict())
    assert keys == {
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
        "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
        "mlp.fc2.weight", "mlp.fc2.bias",
    }
    scaled = set(Block(8, num_heads=2, init_values=1e-5).state_dict())
    assert scaled - keys == {"ls1.gamma", "ls2.gamma"}


# -- sin-cos position embeddings ------------------------------------------------------------------
def _sincos_reference(gh: int, gw: int, dim: int) -> np.ndarray:
    """big_vision's formula in float64, written out loop by loop."""
    q = dim // 4
    omega = [1.0 / 10000 ** (j / (q - 1)) for j in range(q)]
    table = np.zeros((gh * gw, dim))
    for r in range(gh):
        for c in range(gw):
            t = r * gw + c
            for j, w in enumerate(omega):
                table[t, j] = math.sin(c * w)
                table[t, q + j] = math.cos(c * w)
                table[t, 2 * q + j] = math.sin(r * w)
                table[t, 3 * q + j] = math.cos(r * w)
    return table


@pytest.mark.parametrize("grid, dim", [((2, 3), 8), ((4, 7), 64), ((14, 14), 384)])
def test_sincos_table_matches_big_vision_formula(grid, dim):
    table = sincos_2d_pos_embed(grid, dim)
    assert table.shape == (1, grid[0] * grid[1], dim) and table.dtype == torch.float32
    np.testing.assert_allclose(table[0].numpy(), _sincos_reference(*grid, dim), atol=1e-6, rtol=0)


def test_sincos_column_half_comes_first():
    table = sincos_2d_pos_embed((2, 3), 8)[0]
    assert table[1, 0].item() == pytest.approx(math.sin(1.0))  # r=0, c=1: column sin
    assert table[3, 4].item() == pytest.approx(math.sin(1.0))  # r=1, c=0: row sin at D/2
    assert table[1, 4].item() == 0.0


# -- injected layers and their own initialisation -------------------------------------------------
def test_block_builds_the_norm_activation_mlp_and_attention_it_is_given():
    class Marked(Attention):
        pass

    block = Block(16, num_heads=2, norm_layer=partial(nn.LayerNorm, eps=1e-3),
                  act_layer=nn.ReLU, attn_layer=partial(Marked, attn_impl="math"))
    assert block.norm1.eps == block.norm2.eps == 1e-3
    assert isinstance(block.mlp.act, nn.ReLU)
    assert isinstance(block.attn, Marked) and block.attn.attn_impl == "math"
    default = Block(16, num_heads=2)
    assert default.norm1.eps == 1e-6 and default.mlp.act.approximate == "none"
    assert default.attn.attn_impl == "sdpa"


def test_attention_initialises_q_k_v_as_three_kernels_in_the_jax_scheme():
    attn = Attention(64, num_heads=4)
    attn.init_weights("jax")
    bound = math.sqrt(6 / (64 + 64))
    for part in (*attn.qkv.weight.chunk(3), attn.proj.weight):
        assert 0.8 * bound < part.abs().max() <= bound
    assert torch.all(attn.qkv.bias == 0) and torch.all(attn.proj.bias == 0)
    attn.init_weights("timm")
    assert attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_mlp_and_pool_initialise_themselves():
    mlp = Mlp(32, hidden_features=128)
    mlp.init_weights("jax")
    assert 0 < mlp.fc1.bias.abs().max() < 1e-5 and 0 < mlp.fc2.bias.abs().max() < 1e-5
    mlp.init_weights("timm")
    assert torch.all(mlp.fc1.bias == 0)
    pool = AttentionPool(32, num_heads=4)
    pool.init_weights("timm")
    assert pool.latent.std().item() == pytest.approx(32 ** -0.5, rel=0.35)
    pool.init_weights("jax")
    kv_bound = math.sqrt(6 / (32 + 32))
    for part in pool.kv.weight.chunk(2):
        assert 0.8 * kv_bound < part.abs().max() <= kv_bound


def test_attention_pool_uses_the_same_kernel_on_both_paths():
    pool = AttentionPool(32, num_heads=4).eval()
    pool.init_weights("timm")
    x = torch.randn(3, 10, 32)
    sdpa = pool(x)
    pool.attn_impl = "math"
    torch.testing.assert_close(pool(x), sdpa, atol=1e-6, rtol=0)


def test_init_submodules_lets_a_unit_zero_its_last_norm_after_the_norms_are_reset():
    from vitzoo.models import init_submodules
    from vitzoo.models.hybrid import ResNetV2

    backbone = ResNetV2((1,), width=32)
    with torch.no_grad():
        for p in backbone.parameters():
            p.fill_(3.0)
    init_submodules(backbone, "jax")
    unit = backbone.stages[0].blocks[0]
    assert torch.all(unit.norm3.weight == 0)
    assert torch.all(unit.norm1.weight == 1) and torch.all(unit.norm1.bias == 0)
    fan_in = 3 * 7 * 7
    assert backbone.stem.conv.weight.std().item() == pytest.approx(fan_in ** -0.5, rel=0.2)
