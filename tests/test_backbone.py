"""vitzoo as a backbone: any input size, intermediate features, attention maps, tracing.

The references in data/timm_backbone/ were written by timm 1.0.31 itself
(fixtures/make_timm_backbone_fixtures.py) for the same weights.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

import vitzoo
from vitzoo.layers import attention as attention_module
from vitzoo.layers import interpolate_pos_embed, resample_pos_embed, std_conv

DATA = Path(__file__).parent / "data" / "timm_backbone"
TINY = vitzoo.ViTConfig(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4,
                        mlp_dim=64, num_classes=5)


def image(h: int, w: int, batch: int = 2) -> torch.Tensor:
    """The fixtures' deterministic input (see make_timm_backbone_fixtures.image)."""
    n = torch.arange(batch * 3 * h * w, dtype=torch.float32).reshape(batch, 3, h, w)
    return torch.sin(n * 0.0137) + 0.5 * torch.cos(n * 0.00071)


def _vitzoo_for(meta: dict) -> vitzoo.VisionTransformer:
    kwargs = json.loads(meta["timm_kwargs"])
    if meta["arch"]:
        return vitzoo.create_model(meta["arch"], depth=kwargs["depth"],
                                   num_classes=kwargs["num_classes"],
                                   embed_dim=kwargs["embed_dim"], num_heads=kwargs["num_heads"],
                                   mlp_dim=4 * kwargs["embed_dim"],
                                   dynamic_img_size=kwargs["dynamic_img_size"])
    cfg = vitzoo.ViTConfig(
        img_size=kwargs["img_size"], patch_size=kwargs["patch_size"],
        embed_dim=kwargs["embed_dim"], depth=kwargs["depth"], num_heads=kwargs["num_heads"],
        mlp_dim=int(kwargs["embed_dim"] * kwargs["mlp_ratio"]),
        num_classes=kwargs["num_classes"], distilled=kwargs.get("distilled", False),
        global_pool=kwargs.get("global_pool", "token"),
        class_token=kwargs.get("class_token", True), fc_norm=kwargs.get("fc_norm", False),
        dynamic_img_size=kwargs.get("dynamic_img_size", False),
        dynamic_img_pad=kwargs.get("dynamic_img_pad", False))
    return vitzoo.build_model(cfg)


CASES = sorted(p.stem for p in DATA.glob("*.safetensors"))


def _timm_standardize(weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """timm's weight standardisation, ``(w - mean) / sqrt(var + 1e-8)``; vitzoo computes
    Google's ``(w - mean) / (std + 1e-5)``, a few 1e-5 away on random weights."""
    flat = weight.flatten(1)
    var, mean = torch.var_mean(flat, dim=1, keepdim=True, unbiased=False)
    return ((flat - mean) / torch.sqrt(var + 1e-8)).view_as(weight)


@pytest.fixture(params=CASES)
def timm_ref(request, monkeypatch):
    if request.param.startswith("hybrid"):  # compare the dynamic path, not the stem's formula
        monkeypatch.setattr(std_conv, "standardize_weight", _timm_standardize)
    path = DATA / f"{request.param}.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    state = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
    model = _vitzoo_for(meta).eval()
    model.load_state_dict(state, strict=True)
    return request.param, model, tensors, json.loads(meta["sizes"]), state, meta


def test_there_are_fixtures_for_vit_deit_gap_pad_and_hybrid():
    assert set(CASES) == {"vit_dynamic", "vit_dynamic_pad", "deit_dynamic", "vit_avg_dynamic",
                          "hybrid_dynamic"}


# -- any input size ---------------------------------------------------------------------------
def _atol(name: str) -> float:
    # measured: ViT and DeiT equal timm's stored outputs to the last bit on the machine that
    # stored them, and to 1.4e-6 on a CPU whose MKL kernels round differently; the hybrid's stem
    # sums in another order (up to 8.6e-6 on un-normed tokens)
    return 1e-5 if name.startswith("hybrid") else 2e-6


def test_dynamic_img_size_reproduces_timm_at_every_size(timm_ref):
    name, model, ref, sizes, _, _ = timm_ref
    with torch.no_grad():
        for h, w in sizes:
            x = image(h, w)
            torch.testing.assert_close(model.forward_features(x), ref[f"features.{h}x{w}"],
                                       atol=_atol(name), rtol=0)
            torch.testing.assert_close(model(x), ref[f"logits.{h}x{w}"], atol=_atol(name),
                                       rtol=0)


def test_dynamic_model_at_its_native_size_equals_the_fixed_size_model_bit_for_bit(timm_ref):
    _, model, _, _, state, meta = timm_ref
    fixed_cfg = model.cfg.replace(dynamic_img_size=False, dynamic_img_pad=False)
    fixed = vitzoo.build_model(fixed_cfg).eval()
    fixed.load_state_dict(state, strict=True)
    x = image(*model.cfg.img_size)
    with torch.no_grad():
        assert torch.equal(model(x), fixed(x))
        assert torch.equal(model.forward_features(x), fixed.forward_features(x))


def test_fixed_size_model_still_refuses_other_sizes():
    model = vitzoo.build_model(TINY).eval()
    with pytest.raises(vitzoo.ImageSizeError, match="dynamic_img_size=True"):
        model(image(40, 32))


def test_dynamic_size_without_padding_names_the_fix_for_partial_patches():
    model = vitzoo.build_model(TINY.replace(dynamic_img_size=True)).eval()
    with pytest.raises(vitzoo.ImageSizeError, match="dynamic_img_pad=True"):
        model(image(36, 32))
    with pytest.raises(vitzoo.ImageSizeError, match="smaller than one 8x8 patch"):
        model(image(4, 32))
    assert model(image(40, 24)).shape == (2, 5)


def test_scipy_rule_at_run_time_is_googles_zoom():
    table = torch.randn(1, 1 + 7 * 7, 16)
    runtime = interpolate_pos_embed(table, [10, 12], [7, 7], 1, "scipy")
    load_time = resample_pos_embed(table, (10, 12), mode="scipy")
    torch.testing.assert_close(runtime, load_time, atol=2e-6, rtol=0)


def test_sincos_model_recomputes_its_table_for_any_grid():
    cfg = TINY.replace(pos_embed="sincos", class_token=False, global_pool="avg",
                       dynamic_img_size=True)
    model = vitzoo.build_model(cfg).eval()
    fixed = vitzoo.build_model(cfg.replace(dynamic_img_size=False, img_size=(48, 24))).eval()
    fixed.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(image(48, 24)), fixed(image(48, 24)), atol=1e-6,
                                   rtol=0)


def test_set_input_size_reproduces_timm(timm_ref):
    name, model, ref, _, state, _ = timm_ref
    if "resized.logits" not in ref:
        pytest.skip("no set_input_size reference for the hybrid")
    fixed = vitzoo.build_model(model.cfg.replace(dynamic_img_size=False)).eval()
    fixed.load_state_dict(state, strict=True)
    fixed.set_input_size(img_size=(156, 192), patch_size=12)
    assert fixed.cfg.img_size == (156, 192) and fixed.cfg.patch_size == (12, 12)
    torch.testing.assert_close(fixed.patch_embed.proj.weight, ref["resized.proj"], atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(fixed.pos_embed, ref["resized.pos_embed"], atol=1e-6, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(fixed(image(156, 192)), ref["resized.logits"], atol=1e-4,
                                   rtol=0)


def test_set_input_size_on_a_hybrid_resamples_its_table_and_keeps_loading():
    model = vitzoo.create_model("vit_tiny_r_s16_p8_224", depth=1, embed_dim=64, num_heads=4,
                                mlp_dim=128, num_classes=3).eval()
    old = model.pos_embed.detach().clone()
    model.set_input_size(img_size=288)
    assert model.patch_embed.grid_size == (9, 9) and model.pos_embed.shape == (1, 82, 64)
    grid = old[:, 1:].reshape(1, 7, 7, 64).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(9, 9), mode="bicubic", antialias=True)
    torch.testing.assert_close(model.pos_embed[:, 1:],
                               expected.permute(0, 2, 3, 1).reshape(1, 81, 64), atol=1e-6,
                               rtol=0)
    rebuilt = vitzoo.build_model(model.cfg).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = image(288, 288, batch=1)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


# -- intermediate features --------------------------------------------------------------------
def test_forward_intermediates_with_prefix_tokens_match_timm(timm_ref):
    name, model, ref, sizes, _, _ = timm_ref
    x = image(*sizes[1])
    with torch.no_grad():
        final, inter = model.forward_intermediates(x, indices=[0, -1],
                                                   return_prefix_tokens=True, norm=True)
    torch.testing.assert_close(final, ref["fi.final"], atol=_atol(name), rtol=0)
    for i, item in enumerate(inter):
        spatial, prefix = item if isinstance(item, tuple) else (item, None)
        torch.testing.assert_close(spatial, ref[f"fi.spatial.{i}"], atol=_atol(name), rtol=0)
        if f"fi.prefix.{i}" in ref:
            torch.testing.assert_close(prefix, ref[f"fi.prefix.{i}"], atol=_atol(name), rtol=0)
        else:
            assert prefix is None  # no prefix tokens: plain maps, as timm


def test_forward_intermediates_stop_early_matches_timm(timm_ref):
    name, model, ref, sizes, _, _ = timm_ref
    with torch.no_grad():
        final, inter = model.forward_intermediates(image(*sizes[1]), indices=1, stop_early=True,
                                                   output_fmt="NLC")
    torch.testing.assert_close(final, ref["fi_early.final"], atol=_atol(name), rtol=0)
    torch.testing.assert_close(inter[0], ref["fi_early.nlc.0"], atol=_atol(name), rtol=0)


def test_prune_intermediate_layers_keeps_the_chosen_features():
    model = vitzoo.build_model(TINY).eval()
    x = image(32, 32)
    with torch.no_grad():
        before = model.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
        kept = model.prune_intermediate_layers([0, 1])
        after = model.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
    assert kept == [0, 1] and len(model.blocks) == 2 and model.cfg.depth == 2
    assert len(model.feature_info) == 2
    assert isinstance(model.head, torch.nn.Identity)
    for b, a in zip(before, after, strict=True):
        assert torch.equal(a, b)
    assert model(x).shape == (2, 17, 32)  # head pruned: every token, unpooled


def test_get_intermediate_layers_has_dinov2s_semantics():
    model = vitzoo.build_model(TINY.replace(distilled=True)).eval()
    x = image(32, 40 - 8)
    with torch.no_grad():
        tokens, _ = model._embed(x)
        outs = []
        for block in model.blocks:
            tokens = block(tokens)
            outs.append(model.norm(tokens))
        last2 = model.get_intermediate_layers(x, n=2)
        chosen = model.get_intermediate_layers(x, n=[0], reshape=True, return_class_token=True)
        raw = model.get_intermediate_layers(x, n=1, norm=False)
    assert isinstance(last2, tuple) and len(last2) == 2
    for got, want in zip(last2, outs[1:], strict=True):
        assert torch.equal(got, want[:, 2:])  # class and distillation tokens removed
    (patches, cls), = chosen
    assert torch.equal(cls, outs[0][:, 0])
    assert torch.equal(patches, outs[0][:, 2:].reshape(2, 4, 4, 32).permute(0, 3, 1, 2))
    assert not torch.equal(raw[0], last2[1])  # norm=False skips the final norm


def test_get_intermediate_layers_without_a_class_token_says_so():
    model = vitzoo.build_model(TINY.replace(class_token=False, global_pool="avg"))
    with pytest.raises(vitzoo.ConfigError, match="no class token"):
        model.get_intermediate_layers(image(32, 32), return_class_token=True)


@pytest.mark.parametrize("indices", [0, 4, [3], [-4], [], True])
def test_bad_block_indices_are_a_config_error(indices):
    model = vitzoo.build_model(TINY)
    with pytest.raises(vitzoo.ConfigError):
        model.forward_intermediates(image(32, 32), indices=indices)


# -- attention maps ---------------------------------------------------------------------------
def _count_sdpa(monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", counting)
    return calls


def test_attention_maps_leave_sdpa_only_in_the_requested_blocks(monkeypatch):
    model = vitzoo.build_model(TINY.replace(depth=4)).eval()
    calls = _count_sdpa(monkeypatch)
    with torch.no_grad():
        maps = model.attention_maps(image(32, 32), indices=[1])
    assert len(maps) == 1
    assert len(calls) == 1  # block 0 by SDPA, block 1 explicit, blocks 2-3 not run
    calls.clear()
    with torch.no_grad():
        model.attention_maps(image(32, 32), indices=[0, 3])
    assert len(calls) == 2  # blocks 1 and 2


def test_attention_maps_are_the_explicit_paths_probabilities_and_rows_sum_to_one():
    model = vitzoo.build_model(TINY).eval()
    x = image(32, 32)
    with torch.no_grad():
        maps = model.attention_maps(x)
        mean = model.attention_maps(x, indices=[-1], heads="mean")
        tokens, _ = model._embed(x)
        expected = []
        for block in model.blocks:
            tokens, probs = block.forward_with_attn(tokens)
            expected.append(probs)
        features = model.forward_features(x)
    assert len(maps) == 3 and maps[0].shape == (2, 4, 17, 17)
    for got, want in zip(maps, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
        torch.testing.assert_close(got.sum(-1), torch.ones(2, 4, 17), atol=1e-6, rtol=0)
    torch.testing.assert_close(mean[0], expected[-1].mean(1), atol=1e-7, rtol=0)
    # the explicit path computes the same tokens as SDPA
    torch.testing.assert_close(model.norm(tokens), features, atol=1e-5, rtol=0)


def test_attention_maps_reject_an_unknown_heads_mode():
    model = vitzoo.build_model(TINY)
    with pytest.raises(vitzoo.ConfigError, match="'all', 'mean'"):
        model.attention_maps(image(32, 32), heads="max")


# -- timm's model contract --------------------------------------------------------------------
@pytest.mark.parametrize("arch", vitzoo.list_models())
def test_every_architecture_has_timms_model_attributes(arch):
    with torch.device("meta"):
        model = vitzoo.create_model(arch)
    assert model.default_cfg is model.pretrained_cfg
    assert len(model.feature_info) == model.cfg.depth
    info = model.feature_info[-1]
    assert info["module"] == f"blocks.{model.cfg.depth - 1}"
    assert info["num_chs"] == model.embed_dim
    gh = model.patch_embed.grid_size[0]
    assert info["reduction"] == model.cfg.img_size[0] // gh
    heads = model.get_classifier()
    if model.cfg.distilled:
        assert heads == (model.head, model.head_dist)
    else:
        assert heads is model.head


def test_distilled_training_returns_the_pair_in_training_mode_only():
    model = vitzoo.build_model(TINY.replace(distilled=True))
    x = image(32, 32)
    model.set_distilled_training(True)
    model.eval()
    with torch.no_grad():
        mean = model(x)
        model.train()
        pair = model(x)
        cls_logits, dist_logits = model.forward_distill(x)
    assert isinstance(pair, tuple)
    assert torch.equal(pair[0], cls_logits) and torch.equal(pair[1], dist_logits)
    torch.testing.assert_close(mean, (cls_logits + dist_logits) / 2, atol=1e-6, rtol=0)
    model.set_distilled_training(False)
    assert isinstance(model(x), torch.Tensor)


# -- TorchScript and torch.fx -----------------------------------------------------------------
TRACE_CONFIGS = {
    "token": TINY,
    "distilled": TINY.replace(distilled=True),
    "avg_fc_norm": TINY.replace(global_pool="avg", fc_norm=True),
    "map": TINY.replace(global_pool="map", class_token=False),
    "sincos": TINY.replace(pos_embed="sincos", global_pool="avg", class_token=False),
    "representation": TINY.replace(representation_size=16, init_values=0.1),
    "dynamic": TINY.replace(dynamic_img_size=True, dynamic_img_pad=True),
    "dynamic_sincos": TINY.replace(dynamic_img_size=True, pos_embed="sincos", global_pool="avg",
                                   class_token=False),
    "hybrid_r26": vitzoo.registry.default_config("vit_small_r26_s32_224").replace(
        embed_dim=32, num_heads=4, mlp_dim=64, depth=1, img_size=64, backbone_width=32),
    "hybrid_stem": vitzoo.registry.default_config("vit_tiny_r_s16_p8_224").replace(
        embed_dim=32, num_heads=4, mlp_dim=64, depth=1, img_size=64),
    # the modern families' knobs
    "registers_dinov2": TINY.replace(reg_tokens=4, no_embed_class=True, init_values=1e-5,
                                     dynamic_img_size=True, mlp_layer="swiglu"),
    "clip": TINY.replace(pre_norm=True, patch_bias=False, norm_eps=1e-5,
                         act_layer="quick_gelu", num_classes=8),
    "deit3_qk_norm": TINY.replace(no_embed_class=True, init_values=1e-6, qk_norm=True,
                                  head_bias=False),
}


@pytest.mark.parametrize("kind", list(TRACE_CONFIGS))
def test_models_script_and_trace_to_the_same_outputs(kind):
    cfg = TRACE_CONFIGS[kind]
    model = vitzoo.build_model(cfg).eval()
    x = image(*cfg.img_size)
    sizes = [x] + ([image(40, 24)] if cfg.dynamic_img_size else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
        traced = torch.fx.symbolic_trace(model)
        traced_scripted = torch.jit.script(traced)  # timm's fx + TorchScript test
    with torch.no_grad():
        for inp in sizes:
            want = model(inp)
            torch.testing.assert_close(scripted(inp), want, atol=1e-6, rtol=0)
            torch.testing.assert_close(traced(inp), want, atol=0, rtol=0)
            torch.testing.assert_close(traced_scripted(inp), want, atol=1e-6, rtol=0)


def test_traced_model_still_checks_its_input():
    traced = torch.fx.symbolic_trace(vitzoo.build_model(TINY).eval())
    with pytest.raises(vitzoo.ImageSizeError, match="takes 32x32 images"):
        traced(image(40, 32))


def test_reset_classifier_keeps_the_models_mode_and_in_chans_is_an_attribute():
    model = vitzoo.build_model(TINY.replace(in_chans=1)).eval()
    model.reset_classifier(7, "map")
    assert model.in_chans == 1
    assert not any(m.training for m in model.modules())
    model.train().reset_classifier(3, "token")
    assert all(m.training for m in model.modules())
