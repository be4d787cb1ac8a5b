"""VisionTransformer: forward, pooling orders, heads, init, gradients and the backbone methods."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vitzoo
from vitzoo import ConfigError, VisionTransformer, build_model

from conftest import tiny_cfg


def _randomise(model: nn.Module, scale: float = 0.2) -> nn.Module:
    """Every parameter random, so every one of them shows in the outputs."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return model


def _manual_forward_features(model: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """The paper's equations 1-4 written out, with the model's own layers."""
    tokens = model.patch_embed.proj(x).flatten(2).transpose(1, 2)
    prefix = [t.expand(x.shape[0], -1, -1) for t in (model.cls_token, model.dist_token)
              if t is not None]
    z = torch.cat([*prefix, tokens], dim=1) + model.pos_embed
    for block in model.blocks:
        z = z + block.attn(block.norm1(z))
        z = z + block.mlp(block.norm2(z))
    return model.norm(z)


def test_forward_is_patchify_tokens_blocks_norm_and_class_token_head(images):
    model = _randomise(build_model(tiny_cfg())).eval()
    features = model.forward_features(images)
    assert features.shape == (2, 17, 32)
    torch.testing.assert_close(features, _manual_forward_features(model, images),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(model(images), model.head(features[:, 0]), atol=1e-6, rtol=0)


def test_google_avg_pool_is_mean_after_the_final_norm(images):
    model = _randomise(build_model(tiny_cfg(global_pool="avg", class_token=False))).eval()
    assert isinstance(model.fc_norm, nn.Identity) and isinstance(model.norm, nn.LayerNorm)
    features = model.forward_features(images)  # normed, all tokens
    assert features.shape == (2, 16, 32)
    torch.testing.assert_close(model(images), model.head(features.mean(1)), atol=1e-6, rtol=0)


def test_timm_fc_norm_pool_normalises_after_the_mean_and_differs_from_google(images):
    google = _randomise(build_model(tiny_cfg(global_pool="avg", class_token=False))).eval()
    timm = build_model(tiny_cfg(global_pool="avg", class_token=False, fc_norm=True)).eval()
    state = {k.replace("norm.", "fc_norm.") if k.startswith("norm.") else k: v
             for k, v in google.state_dict().items()}
    timm.load_state_dict(state, strict=True)
    assert isinstance(timm.norm, nn.Identity)
    unnormed = timm.forward_features(images)
    torch.testing.assert_close(timm(images), timm.head(timm.fc_norm(unnormed.mean(1))),
                               atol=1e-6, rtol=0)
    assert (timm(images) - google(images)).abs().max() > 1e-2


def test_avg_pool_with_class_token_averages_patch_tokens_only(images):
    model = _randomise(build_model(tiny_cfg(global_pool="avg"))).eval()
    features = model.forward_features(images)
    torch.testing.assert_close(model(images), model.head(features[:, 1:].mean(1)),
                               atol=1e-6, rtol=0)


def test_representation_layer_is_linear_plus_tanh_named_pre_logits_fc(images):
    model = _randomise(build_model(tiny_cfg(representation_size=24))).eval()
    assert {"pre_logits.fc.weight", "pre_logits.fc.bias"} <= set(model.state_dict())
    assert model.head.in_features == 24 and model.head_hidden_size == 24
    assert model.num_features == 32
    features = model.forward_features(images)
    pre = torch.tanh(model.pre_logits.fc(features[:, 0]))
    torch.testing.assert_close(model.forward_head(features, pre_logits=True), pre,
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(model(images), model.head(pre), atol=1e-6, rtol=0)


def test_num_classes_zero_returns_pooled_features(images):
    model = _randomise(build_model(tiny_cfg(num_classes=0))).eval()
    assert isinstance(model.head, nn.Identity)
    assert not any(k.startswith("head") for k in model.state_dict())
    torch.testing.assert_close(model(images), model.forward_features(images)[:, 0],
                               atol=0, rtol=0)


def test_sincos_position_embeddings_are_fixed_and_not_saved(images):
    model = build_model(tiny_cfg(pos_embed="sincos"))
    assert "pos_embed" not in model.state_dict()
    assert "pos_embed" not in dict(model.named_parameters())
    table = vitzoo.layers.sincos_2d_pos_embed((4, 4), 32)
    torch.testing.assert_close(model.pos_embed[:, 1:], table, atol=0, rtol=0)
    assert torch.all(model.pos_embed[:, 0] == 0)
    assert model(images).shape == (2, 5)


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(global_pool="avg", fc_norm=True),
    dict(global_pool="avg", class_token=False),
    dict(representation_size=16, init_values=0.1),
    dict(distilled=True),
    dict(qkv_bias=False, pos_embed="sincos"),
    dict(global_pool="map", class_token=False),
])
def test_gradients_reach_every_parameter(images, overrides):
    model = build_model(tiny_cfg(**overrides)).train()
    loss = (model(images) * torch.randn(2, 5)).sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_grad_checkpointing_gives_the_same_gradients(images):
    plain = build_model(tiny_cfg())
    ckpt = build_model(tiny_cfg())
    ckpt.load_state_dict(plain.state_dict())
    ckpt.set_grad_checkpointing(True)
    for model in (plain, ckpt):
        model(images).square().sum().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters(),
                                     strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=0, msg=name)


def test_set_attn_impl_switches_every_block_and_agrees_to_1e6(images):
    model = _randomise(build_model(tiny_cfg(depth=3))).eval()
    sdpa = model(images)
    model.set_attn_impl("math")
    assert all(b.attn.attn_impl == "math" for b in model.blocks)
    assert model.cfg.attn_impl == "math"
    torch.testing.assert_close(model(images), sdpa, atol=1e-6, rtol=0)
    with pytest.raises(ConfigError):
        model.set_attn_impl("flash")


def test_math_path_can_be_the_config_default():
    model = build_model(tiny_cfg(attn_impl="math"))
    assert {b.attn.attn_impl for b in model.blocks} == {"math"}


def test_drop_path_rates_decay_linearly_over_depth():
    model = build_model(tiny_cfg(depth=4, drop_path_rate=0.3))
    assert isinstance(model.blocks[0].drop_path1, nn.Identity)
    rates = [b.drop_path1.drop_prob for b in model.blocks[1:]]
    assert rates == pytest.approx([0.1, 0.2, 0.3])
    assert [b.drop_path2.drop_prob for b in model.blocks[1:]] == pytest.approx(rates)


def test_eval_mode_is_deterministic_with_all_dropouts_set(images):
    model = build_model(tiny_cfg(drop_rate=0.3, pos_drop_rate=0.2, proj_drop_rate=0.2,
                                 attn_drop_rate=0.2, drop_path_rate=0.2))
    model.eval()
    torch.testing.assert_close(model(images), model(images), atol=0, rtol=0)
    model.train()
    assert not torch.equal(model(images), model(images))


def test_timm_init_statistics():
    model = build_model(tiny_cfg(embed_dim=64, mlp_dim=256, num_heads=4))
    fc1 = model.blocks[0].mlp.fc1.weight
    assert fc1.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.all(model.blocks[0].mlp.fc1.bias == 0)
    assert model.cls_token.abs().max() < 1e-4
    assert model.pos_embed.std().item() == pytest.approx(0.02, rel=0.2)
    assert model.head.weight.abs().max() > 0


def test_jax_init_follows_googles_initialisers():
    model = build_model(tiny_cfg(embed_dim=64, mlp_dim=256, num_heads=4, weight_init="jax",
                                 representation_size=32))
    assert torch.all(model.head.weight == 0) and torch.all(model.head.bias == 0)
    assert torch.all(model.cls_token == 0)
    bound = math.sqrt(6 / (64 + 64))  # Xavier on each (D, D) q / k / v kernel
    for part in model.blocks[0].attn.qkv.weight.chunk(3):
        assert part.abs().max() <= bound
        assert part.abs().max() > 0.8 * bound
    assert torch.all(model.blocks[0].attn.qkv.bias == 0)
    assert model.blocks[0].mlp.fc1.bias.abs().max() < 1e-5
    assert model.blocks[0].mlp.fc1.bias.abs().max() > 0
    fan_in = 3 * 8 * 8
    assert model.patch_embed.proj.weight.std().item() == pytest.approx(
        1 / math.sqrt(fan_in), rel=0.15)


def test_reset_classifier_replaces_the_head_and_updates_the_config(images):
    model = build_model(tiny_cfg())
    model.reset_classifier(7, global_pool="avg")
    assert model.head.out_features == 7 and model.num_classes == 7
    assert model.cfg.num_classes == 7 and model.cfg.global_pool == "avg"
    assert model(images).shape == (2, 7)
    model.reset_classifier(0)
    assert isinstance(model.head, nn.Identity)
    zero = build_model(tiny_cfg(weight_init="jax"))
    zero.reset_classifier(3)
    assert torch.all(zero.head.weight == 0)
    zero.init_weights("timm")
    assert zero.head.weight.abs().max() > 0
    zero.init_weights("jax")
    assert torch.all(zero.head.weight == 0)
    with pytest.raises(ConfigError, match="weight_init mode 'xavier'"):
        zero.init_weights("xavier")
    with pytest.raises(ConfigError):
        build_model(tiny_cfg(class_token=False, global_pool="avg")).reset_classifier(
            3, global_pool="token")


def test_reset_classifier_keeps_dtype():
    model = build_model(tiny_cfg()).double()
    model.reset_classifier(4)
    assert model.head.weight.dtype == torch.float64


def test_no_weight_decay_and_group_matcher():
    model = build_model(tiny_cfg(distilled=True))
    assert model.no_weight_decay() == {"pos_embed", "cls_token", "dist_token"}
    assert build_model(tiny_cfg(pos_embed="sincos")).no_weight_decay() == {"cls_token"}
    matcher = model.group_matcher()
    import re
    stem = re.compile(matcher["stem"])
    assert all(stem.match(k) for k in ("cls_token", "dist_token", "pos_embed",
                                       "patch_embed.proj.weight"))
    assert not stem.match("blocks.0.norm1.weight")
    block_re, _ = matcher["blocks"][0]
    assert re.match(block_re, "blocks.11.attn.qkv.weight").group(1) == "11"
    assert model.group_matcher(coarse=True)["blocks"] == r"^blocks\.(\d+)"


def test_forward_intermediates_returns_grids_of_chosen_blocks(images):
    model = _randomise(build_model(tiny_cfg(depth=4))).eval()
    feats, inter = model.forward_intermediates(images, indices=[0, -1])
    torch.testing.assert_close(feats, model.forward_features(images), atol=1e-6, rtol=0)
    assert [t.shape for t in inter] == [(2, 32, 4, 4)] * 2
    # block 0's output, patch tokens as an NCHW map
    z, _ = model._embed(images)
    z0 = model.blocks[0](z)
    torch.testing.assert_close(inter[0], z0[:, 1:].reshape(2, 4, 4, 32).permute(0, 3, 1, 2),
                               atol=1e-6, rtol=0)
    nlc = model.forward_intermediates(images, indices=2, norm=True, output_fmt="NLC",
                                      intermediates_only=True)
    assert len(nlc) == 2 and nlc[-1].shape == (2, 16, 32)
    torch.testing.assert_close(nlc[-1], feats[:, 1:], atol=1e-6, rtol=0)


def test_forward_intermediates_only_stops_after_the_last_chosen_block(images):
    model = build_model(tiny_cfg(depth=4)).eval()
    calls = []
    for i, block in enumerate(model.blocks):
        block.register_forward_hook(lambda *_, i=i: calls.append(i))
    model.forward_intermediates(images, indices=[1], intermediates_only=True)
    assert calls == [0, 1]


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(indices=5), "indices=5 must be in 1..4"),
    (dict(indices=[4]), "block index 4 is out of range"),
    (dict(output_fmt="NHWC"), "output_fmt='NHWC'"),
])
def test_forward_intermediates_rejects_bad_arguments(images, kwargs, fragment):
    model = build_model(tiny_cfg(depth=4))
    with pytest.raises(ConfigError) as err:
        model.forward_intermediates(images, **kwargs)
    assert fragment in str(err.value)


def test_attention_maps_are_the_math_paths_probabilities(images):
    model = _randomise(build_model(tiny_cfg(depth=3))).eval()
    maps = model.attention_maps(images, indices=[0, 2])
    assert [m.shape for m in maps] == [(2, 4, 17, 17)] * 2
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(2, 4, 17), atol=1e-5, rtol=0)
    z = model.blocks[0](model._embed(images)[0])
    z = model.blocks[1](z)
    _, expected = model.blocks[2].attn.forward_with_attn(model.blocks[2].norm1(z))
    torch.testing.assert_close(maps[1], expected, atol=1e-6, rtol=0)


def test_rectangular_images_and_other_channel_counts():
    model = build_model(tiny_cfg(img_size=(32, 48), in_chans=1))
    assert model.pos_embed.shape == (1, 1 + 4 * 6, 32)
    assert model.patch_embed.proj.weight.shape == (32, 1, 8, 8)
    assert model(torch.randn(1, 1, 32, 48)).shape == (1, 5)
    with pytest.raises(vitzoo.ImageSizeError, match="img_size=\\(32, 32\\)"):
        model(torch.randn(1, 1, 32, 32))


def test_constructor_rejects_non_configs():
    with pytest.raises(ConfigError, match="takes a ViTConfig"):
        VisionTransformer({"embed_dim": 32})  # type: ignore[arg-type]


def test_model_runs_on_the_meta_device():
    with torch.device("meta"):
        model = build_model(tiny_cfg())
        out = model(torch.empty(2, 3, 32, 32))
    assert out.shape == (2, 5) and out.device.type == "meta"


def test_float64_forward_matches_float32(images):
    model = _randomise(build_model(tiny_cfg())).eval()
    expected = model.double()(images.double())
    got = model.float()(images)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=0)
    assert F.softmax(got, -1).sum(-1).allclose(torch.ones(2))


def test_sdpa_and_math_agree_to_1e6_on_the_real_vit_ti16():
    model = vitzoo.create_model("vit_tiny_patch16_224").eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        sdpa = model(x)
        model.set_attn_impl("math")
        torch.testing.assert_close(model(x), sdpa, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dim, heads", [(768, 12), (1024, 16)])
def test_sdpa_and_math_attention_agree_at_base_and_large_width(dim, heads):
    attn = vitzoo.layers.Attention(dim, num_heads=heads).eval()
    x = torch.randn(2, 197, dim)
    with torch.no_grad():
        sdpa = attn(x)
        attn.attn_impl = "math"
        torch.testing.assert_close(attn(x), sdpa, atol=1e-6, rtol=0)


def test_map_pooling_is_one_query_attention_then_a_residual_mlp(images):
    model = _randomise(build_model(tiny_cfg(global_pool="map", class_token=False))).eval()
    pool = model.attn_pool
    tokens = model.forward_features(images)  # (B, 16, D), after the final norm
    q = pool.q(pool.latent).reshape(1, 4, 8).transpose(0, 1)  # (H, 1, hd)
    k, v = pool.kv(tokens).reshape(2, 16, 2, 4, 8).permute(2, 0, 3, 1, 4)  # 2 x (B, H, N, hd)
    probs = (q @ k.transpose(-2, -1) / math.sqrt(8)).softmax(-1)  # (B, H, 1, N)
    x = pool.proj((probs @ v).transpose(1, 2).reshape(2, 32))
    x = x + pool.mlp(pool.norm(x))
    torch.testing.assert_close(model.forward_head(tokens, pre_logits=True), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(model(images), model.head(x), atol=1e-5, rtol=0)
    sdpa = model(images)
    model.set_attn_impl("math")
    assert pool.attn_impl == "math"
    torch.testing.assert_close(model(images), sdpa, atol=1e-6, rtol=0)


def test_map_config_rules_and_init():
    with pytest.raises(ConfigError, match="does not use fc_norm"):
        tiny_cfg(global_pool="map", class_token=False, fc_norm=True)
    model = build_model(tiny_cfg(global_pool="map", class_token=False, weight_init="jax"))
    assert model.attn_pool.latent.abs().max() > 0
    assert torch.all(model.attn_pool.q.bias == 0)
    assert {k for k in model.state_dict() if k.startswith("attn_pool.")} == {
        "attn_pool.latent", "attn_pool.q.weight", "attn_pool.q.bias", "attn_pool.kv.weight",
        "attn_pool.kv.bias", "attn_pool.proj.weight", "attn_pool.proj.bias",
        "attn_pool.norm.weight", "attn_pool.norm.bias", "attn_pool.mlp.fc1.weight",
        "attn_pool.mlp.fc1.bias", "attn_pool.mlp.fc2.weight", "attn_pool.mlp.fc2.bias"}


def test_reset_classifier_from_map_to_avg_removes_the_attention_pool(images):
    model = _randomise(build_model(tiny_cfg(global_pool="map", class_token=False))).eval()
    model.reset_classifier(3, global_pool="avg")
    assert model.attn_pool is None
    assert not [k for k in model.state_dict() if k.startswith("attn_pool.")]
    tokens = model.forward_features(images)
    torch.testing.assert_close(model(images), model.head(tokens.mean(dim=1)), atol=0, rtol=0)


def test_reset_classifier_from_token_to_map_pools_with_a_new_attention_pool(images):
    model = _randomise(build_model(tiny_cfg(weight_init="jax"))).eval()
    model.reset_classifier(4, global_pool="map")
    assert isinstance(model.attn_pool, vitzoo.layers.AttentionPool)
    assert model.attn_pool.latent.abs().max() > 0  # initialised, as the config's scheme says
    with torch.no_grad():
        model.head.weight.normal_()
    tokens = model.forward_features(images)
    pooled = model.attn_pool(tokens)
    torch.testing.assert_close(model(images), model.head(pooled), atol=0, rtol=0)
    assert not torch.allclose(pooled, tokens[:, 0])
    assert model.cfg.global_pool == "map"
    model.reset_classifier(4, global_pool="token")
    assert model.attn_pool is None
    torch.testing.assert_close(model(images), model.head(model.forward_features(images)[:, 0]),
                               atol=0, rtol=0)
