"""timm's public API outside the model class, on vitzoo: pretrained cfgs, create_model's timm
arguments (pretrained_cfg, pretrained_cfg_overlay, device / dtype, layer switches),
list_models, resolve_data_config and create_transform, against what timm itself answers.

The reference answers in data/timm_api/ were written by timm 1.0.31
(fixtures/make_timm_api_fixtures.py); no test needs timm or the network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import vitzoo
from vitzoo.io import save_state_dict

DATA = Path(__file__).parent / "data"
API = DATA / "timm_api"
REFERENCE = json.loads((API / "pretrained_cfgs.json").read_text())
TINY = dict(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, mlp_dim=64)


def _plain(value):
    """JSON lists as tuples, as the dicts hold them."""
    return tuple(_plain(v) for v in value) if isinstance(value, list) else value


def _meta(name: str, **kwargs):
    return vitzoo.create_model(name, device="meta", **kwargs)


# -- pretrained cfgs ------------------------------------------------------------------------------
# vitzoo fetches the original release's .npz for the "orig" tags, timm its converted copies
ORIGINAL_NPZ = {n for n in REFERENCE["cfgs"] if "orig_in21k" in n or n in (
    "vit_base_r50_s16_224", "vit_base_r50_s16_384", "vit_huge_patch14_224",
    "vit_large_patch32_224", "vit_large_patch32_384")}


# built (on the meta device) to show create_model holds what get_pretrained_cfg says
BUILT = ["vit_tiny_patch16_224", "vit_base_patch16_224.augreg_in21k", "vit_base_patch16_384",
         "vit_large_patch14_224", "deit_base_distilled_patch16_384.fb_in1k",
         "vit_base_r50_s16_384.orig_in21k_ft_in1k", "vit_small_r26_s32_224",
         "vit_base_patch16_224.bamboo"]


def _deliberately_different(name: str, key: str, ours: dict) -> bool:
    """Where vitzoo's cfg differs from timm's on purpose (docs/models.md lists them): the
    original release files as URLs (SigLIP's .npz, OpenAI's CLIP .pt), DINOv2 models that
    take any input size as the original does, and QuickGELU weights that compute QuickGELU
    under any architecture name (timm's note says to pick the quickgelu variant)."""
    if key in ("url", "custom_load") and (name in ORIGINAL_NPZ or "siglip" in name
                                          or ours["tag"] == "openai"):
        return True
    if key == "fixed_input_size" and "dinov2" in name:
        return ours[key] is False
    return key == "notes" and "natively QuickGELU" in " ".join(REFERENCE["cfgs"][name][key])


@pytest.mark.parametrize("name", sorted(REFERENCE["cfgs"]))
def test_pretrained_cfg_has_timms_keys_and_values(name):
    theirs = REFERENCE["cfgs"][name]
    ours = vitzoo.get_pretrained_cfg(name).to_dict()
    for key, value in theirs.items():
        if _deliberately_different(name, key, ours):
            continue
        expected = None if key == "url" and value == "" else _plain(value)  # timm: "" = none
        assert ours[key] == expected, key
    if name in ORIGINAL_NPZ:
        assert ours["url"].endswith(".npz") and ours["custom_load"] is True


@pytest.mark.parametrize("name", BUILT)
def test_a_built_models_pretrained_cfg_is_get_pretrained_cfg(name):
    model = _meta(name)
    assert model.pretrained_cfg == vitzoo.get_pretrained_cfg(name).to_dict()
    assert model.default_cfg is model.pretrained_cfg
    theirs = {k: _plain(v) for k, v in REFERENCE["data_configs"][name]["plain"].items()}
    assert vitzoo.resolve_data_config(model=model) == theirs
    assert vitzoo.resolve_model_data_config(model) == theirs
    assert vitzoo.resolve_data_config({}, model=model) == theirs


def test_every_timm_key_is_in_the_schema():
    keys = set(vitzoo.PretrainedCfg().to_dict())
    for cfg in REFERENCE["cfgs"].values():
        assert set(cfg) <= keys
    assert {"url", "hf_hub_id", "architecture", "tag", "custom_load", "input_size",
            "test_input_size", "min_input_size", "fixed_input_size", "interpolation",
            "crop_pct", "crop_mode", "mean", "std", "num_classes", "pool_size", "first_conv",
            "classifier", "license"} <= keys


def test_fixed_input_size_is_false_only_for_dynamic_models():
    assert _meta("vit_tiny_patch16_224").pretrained_cfg["fixed_input_size"] is True
    dynamic = _meta("vit_tiny_patch16_224", dynamic_img_size=True).pretrained_cfg
    assert dynamic["fixed_input_size"] is False
    # timm keeps True there; vitzoo says what the model accepts
    assert REFERENCE["dynamic_vit_tiny"]["fixed_input_size"] is True
    assert vitzoo.get_pretrained_cfg_value("deit_tiny_distilled_patch16_224",
                                           "classifier") == ("head", "head_dist")
    with pytest.raises(vitzoo.UnknownOverrideError, match="crop_pct"):
        vitzoo.get_pretrained_cfg_value("vit_tiny_patch16_224", "crop_pt")


# -- data configs and transforms ------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(REFERENCE["data_configs"]))
def test_resolve_data_config_gives_timms_answers(name):
    cfg = REFERENCE["cfgs"][name]
    theirs = {k: {key: _plain(v) for key, v in d.items()}
              for k, d in REFERENCE["data_configs"][name].items()}
    assert vitzoo.resolve_data_config(pretrained_cfg=cfg) == theirs["plain"]
    args = {"img_size": 160, "crop_pct": 0.95, "interpolation": "bilinear",
            "unrelated_option": 1}
    assert vitzoo.resolve_data_config(args, pretrained_cfg=cfg) == theirs["args"]
    assert vitzoo.resolve_data_config(pretrained_cfg=cfg, use_test_size=True) == \
        theirs["test_size"]


def test_resolve_data_config_reads_test_sizes_and_namespaces():
    import argparse

    cfg = dict(REFERENCE["cfgs"]["vit_base_patch16_224"], test_input_size=(3, 256, 256),
               test_crop_pct=1.0)
    test = vitzoo.resolve_data_config(pretrained_cfg=cfg, use_test_size=True)
    assert test["input_size"] == (3, 256, 256) and test["crop_pct"] == 1.0
    namespace = argparse.Namespace(input_size=None, img_size=None, in_chans=1, mean=None,
                                   std=None, crop_pct=None, interpolation="", crop_mode=None)
    grey = vitzoo.resolve_data_config(namespace, pretrained_cfg=cfg)
    assert grey["input_size"] == (1, 224, 224) and grey["mean"] == (0.5,)


def _transform_cases():
    path = API / "transforms.safetensors"
    with safe_open(str(path), "pt") as f:
        configs = json.loads(f.metadata()["configs"])
    return configs, load_file(str(path))


@pytest.mark.parametrize("case", sorted(_transform_cases()[0]))
def test_create_transform_equals_timms_eval_transform(case):
    Image = pytest.importorskip("PIL.Image")
    configs, expected = _transform_cases()
    config = {k: _plain(v) for k, v in configs[case]["config"].items()}
    image = Image.open(API / "image.png")
    timm_form = vitzoo.create_transform(**config)(image)
    # Pillow's resize in both, then the same float32 arithmetic: equal to the last bit
    torch.testing.assert_close(timm_form, expected[case], atol=0, rtol=0)
    vitzoo_form = vitzoo.create_transform(vitzoo.resolve_data_config(**config))(image)
    torch.testing.assert_close(vitzoo_form, expected[case], atol=0, rtol=0)


def test_create_transform_timm_form_defaults_and_training():
    eval_steps = vitzoo.create_transform(input_size=(3, 32, 32))
    names = [type(t).__name__ for t in eval_steps.transforms]
    assert names == ["Resize", "ToTensor", "EnsureChannels", "CenterCrop", "Normalize"]
    resize, norm = eval_steps.transforms[0], eval_steps.transforms[-1]
    assert resize.size == 36 and resize.interpolation == "bilinear"  # floor(32 / 0.875)
    assert norm.mean == (0.485, 0.456, 0.406)  # timm's defaults without a config
    train = vitzoo.create_transform(32, True, interpolation="random", vflip=0.5,
                                    grayscale_prob=0.2)
    assert [type(t).__name__ for t in train.transforms] == [
        "ToTensor", "EnsureChannels", "RandomResizedCrop", "RandomHorizontalFlip",
        "RandomVerticalFlip", "ColorJitter", "RandomGrayscale", "Normalize"]
    out = train(torch.rand(3, 50, 40), generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 32, 32)
    no_aug = vitzoo.create_transform(input_size=(3, 32, 48), is_training=True, no_aug=True)
    assert no_aug.transforms[0].size == (32, 48) and not no_aug.transforms[0].keep_ratio
    jitter = vitzoo.create_transform(32, is_training=True, color_jitter=0.3,
                                     color_jitter_prob=0.8)
    assert type(jitter.transforms[4]).__name__ == "RandomApply"


def test_create_transform_refuses_what_vitzoo_does_not_implement():
    for option in (dict(auto_augment="rand-m9-mstd0.5"), dict(re_prob=0.25),
                   dict(use_prefetcher=True), dict(crop_mode="border"),
                   dict(tf_preprocessing=True), dict(naflex=True),
                   dict(color_jitter=(0.4, 0.4, 0.4, 0.1), is_training=True)):
        with pytest.raises(vitzoo.UnsupportedOptionError):
            vitzoo.create_transform(**{"input_size": 32, **option})
    # the same options at their "off" values change nothing
    plain = vitzoo.create_transform(input_size=32, re_prob=0.0, auto_augment=None,
                                    use_prefetcher=False, re_mode="pixel", normalize=True)
    assert len(plain.transforms) == 5
    with pytest.raises(vitzoo.UnknownOverrideError, match="hflip"):
        vitzoo.create_transform(input_size=32, hflp=0.5)
    with pytest.raises(vitzoo.ConfigError, match="disagree"):
        vitzoo.create_transform(32, train=True, is_training=False)


# -- list_models ----------------------------------------------------------------------------------
@pytest.mark.parametrize("answer", json.loads((API / "list_models.json").read_text())["answers"],
                         ids=lambda a: json.dumps(a["query"]))
def test_list_models_gives_timms_answers(answer):
    assert vitzoo.list_models(**answer["query"]) == answer["names"]


def test_list_models_keeps_vitzoos_own_form():
    assert vitzoo.list_models("deit_tiny*") == ["deit_tiny_distilled_patch16_224",
                                                "deit_tiny_patch16_224"]
    assert vitzoo.list_models(pattern="vit_huge*") == ["vit_huge_patch14_224",
                                                       "vit_huge_patch14_clip_224",
                                                       "vit_huge_patch14_clip_336",
                                                       "vit_huge_patch14_clip_378",
                                                       "vit_huge_patch14_clip_quickgelu_224",
                                                       "vit_huge_patch14_clip_quickgelu_378"]
    assert vitzoo.list_pretrained("vit_large_patch14_224*") == []  # its tag has no weights
    assert vitzoo.list_pretrained(pattern="deit_tiny_d*") == [
        "deit_tiny_distilled_patch16_224.fb_in1k"]
    assert vitzoo.list_pretrained("deit_*", exclude_filters="*distilled*") == [
        "deit_base_patch16_224.fb_in1k", "deit_base_patch16_384.fb_in1k",
        "deit_small_patch16_224.fb_in1k", "deit_tiny_patch16_224.fb_in1k"]


# -- create_model's timm arguments -------------------------------------------------------------
def test_timms_layer_switches_and_unset_arguments_are_accepted():
    model = vitzoo.create_model("vit_tiny_patch16_224", scriptable=True, exportable=True,
                                no_jit=True, drop_path_rate=None, global_pool=None,
                                not_an_argument=None, **TINY)
    assert model.cfg.drop_path_rate == 0.0 and model.cfg.global_pool == "token"
    with pytest.raises(TypeError):  # an UnknownOverrideError, as timm raises TypeError
        vitzoo.create_model("vit_tiny_patch16_224", not_an_argument=1, **TINY)
    kept = vitzoo.create_model("vit_tiny_patch16_224", representation_size=None, **TINY)
    assert kept.cfg.representation_size is None


def test_device_and_dtype_place_every_tensor():
    model = vitzoo.create_model("vit_tiny_patch16_224", device="meta", dtype=torch.float64,
                                **TINY)
    tensors = [*model.parameters(), *model.buffers()]
    assert all(t.device.type == "meta" and t.dtype == torch.float64 for t in tensors)
    half = vitzoo.create_model("vit_tiny_patch16_224", features_only=True, out_indices=2,
                               dtype=torch.bfloat16, **TINY)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}


def test_pretrained_cfg_as_a_tag_or_a_dict():
    tagged = _meta("vit_base_patch16_224", pretrained_cfg="augreg_in21k")
    assert tagged.pretrained_cfg["tag"] == "augreg_in21k" and tagged.num_classes == 21843
    with pytest.raises(vitzoo.UnknownTagError):
        _meta("vit_base_patch16_224", pretrained_cfg="augreg9")
    custom = vitzoo.create_model("vit_tiny_patch16_224", pretrained_cfg=dict(
        mean=(0.1, 0.2, 0.3), num_classes=7, crop_pct=1.0), **TINY)
    cfg = custom.pretrained_cfg
    assert custom.num_classes == 7 and cfg["num_classes"] == 7
    assert cfg["mean"] == (0.1, 0.2, 0.3) and cfg["crop_pct"] == 1.0
    assert cfg["architecture"] == "vit_tiny_patch16_224" and cfg["url"] is None
    with pytest.raises(vitzoo.UnknownOverrideError, match="crop_pct"):
        vitzoo.create_model("vit_tiny_patch16_224", pretrained_cfg={"crop_pcx": 1.0}, **TINY)
    with pytest.raises(vitzoo.ConfigError, match="mean"):
        vitzoo.create_model("vit_tiny_patch16_224", pretrained_cfg_overlay={"mean": "0.5"},
                            **TINY)


def test_an_overlay_ends_up_in_pretrained_cfg_and_sets_the_defaults():
    model = vitzoo.create_model("vit_tiny_patch16_224", pretrained_cfg_overlay=dict(
        crop_pct=0.95, num_classes=3, input_size=(3, 48, 48), hf_hub_id="me/mine"),
        **{k: v for k, v in TINY.items() if k != "img_size"})
    cfg = model.pretrained_cfg
    assert (cfg["crop_pct"], cfg["hf_hub_id"], cfg["custom_load"]) == (0.95, "me/mine", False)
    assert model.num_classes == 3 and cfg["input_size"] == (3, 48, 48)
    assert model.cfg.img_size == (48, 48)
    with pytest.raises(vitzoo.UnsupportedOptionError, match="file"):
        vitzoo.create_model("vit_tiny_patch16_224", pretrained=True,
                            pretrained_cfg_overlay=dict(hf_hub_id="me/mine"))


@pytest.fixture
def tiny_file(tmp_path):
    torch.manual_seed(0)
    model = vitzoo.create_model("vit_tiny_patch16_224", num_classes=5, **TINY).eval()
    path = save_state_dict(model.state_dict(), tmp_path / "finetuned.safetensors")
    return model, path


def test_pretrained_with_an_overlaid_file_loads_that_file(tiny_file, tmp_path):
    reference, path = tiny_file
    x = torch.randn(2, 3, 32, 32)
    model = vitzoo.create_model("vit_tiny_patch16_224", pretrained=True,
                                pretrained_cfg_overlay=dict(file=str(path), crop_pct=1.0),
                                **TINY)
    cfg = model.pretrained_cfg
    assert (cfg["file"], cfg["crop_pct"], cfg["custom_load"], cfg["origin"]) == (
        str(path), 1.0, False, "pytorch")
    assert model.num_classes == 5  # the file's head
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=0, rtol=0)
    pickle = tmp_path / "finetuned.pth"
    torch.save(reference.state_dict(), pickle)
    new_head = vitzoo.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=2,
                                   pretrained_cfg_overlay=dict(file=str(pickle)), **TINY)
    assert new_head.load_report.dropped == ["head.weight", "head.bias"]
    with torch.no_grad():
        torch.testing.assert_close(new_head.forward_features(x), reference.forward_features(x),
                                   atol=0, rtol=0)
    features = vitzoo.create_model("vit_tiny_patch16_224", pretrained=True, features_only=True,
                                   out_indices=(0, 1),
                                   pretrained_cfg_overlay=dict(file=str(path)), **TINY)
    with torch.no_grad():
        torch.testing.assert_close(features(x), reference.forward_intermediates(
            x, indices=(0, 1), intermediates_only=True), atol=0, rtol=0)


def test_an_overlaid_file_at_another_size_is_resampled(tiny_file):
    reference, path = tiny_file
    model = vitzoo.create_model("vit_tiny_patch16_224", pretrained=True,
                                pretrained_cfg_overlay=dict(file=str(path)),
                                **dict(TINY, img_size=48))
    assert model.load_report.resampled["pos_embed"] == "4x4 -> 6x6, bicubic"
    expected = vitzoo.layers.resample_pos_embed(reference.pos_embed.detach(), (6, 6),
                                                old_grid=(4, 4), num_prefix_tokens=1,
                                                mode="bicubic")
    torch.testing.assert_close(model.pos_embed.detach(), expected, atol=0, rtol=0)


def test_an_overlaid_timm_file_reproduces_timms_logits(tmp_path):
    ref = load_file(str(DATA / "timm_tiny_token.safetensors"))
    state = {k.removeprefix("state."): v for k, v in ref.items() if k.startswith("state.")}
    save_file(state, str(tmp_path / "timm.safetensors"))
    model = vitzoo.create_model(
        "vit_tiny_patch16_224", pretrained=True,
        pretrained_cfg_overlay=dict(file=str(tmp_path / "timm.safetensors")),
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_dim=128)
    with torch.no_grad():
        torch.testing.assert_close(model(ref["input"]), ref["logits"], atol=1e-6, rtol=0)


def test_an_overlaid_file_that_is_missing_or_foreign_fails_clearly(tmp_path):
    with pytest.raises(vitzoo.CheckpointError, match="nothing.pth"):
        vitzoo.create_model("vit_tiny_patch16_224", pretrained=True,
                            pretrained_cfg_overlay=dict(file=str(tmp_path / "nothing.pth")))
    other = vitzoo.create_model("vit_tiny_patch16_224", **dict(TINY, embed_dim=32, num_heads=4))
    path = save_state_dict(other.state_dict(), tmp_path / "wider.safetensors")
    with pytest.raises(vitzoo.CheckpointMismatchError):
        vitzoo.create_model("vit_tiny_patch16_224", pretrained=True,
                            pretrained_cfg_overlay=dict(file=str(path)), **TINY)


def test_cache_dir_is_where_weights_are_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("VITZOO_OFFLINE", "1")
    monkeypatch.delenv("VITZOO_WEIGHTS_DIR", raising=False)
    with pytest.raises(vitzoo.OfflineError, match=str(tmp_path)):
        vitzoo.create_model("vit_tiny_patch16_224", pretrained=True, cache_dir=tmp_path)
    assert str(tmp_path) not in str(vitzoo.hub.cache_dir())  # only for that call


def test_an_overlaid_google_npz_keeps_googles_numerics(tmp_path, images):
    from conftest import jax_model

    reference = jax_model()  # tanh GELU, Google's initialisers, random weights
    vitzoo.save_model(reference, tmp_path / "tiny.safetensors")
    npz = vitzoo.convert_checkpoint(tmp_path / "tiny.safetensors", tmp_path / "tiny.npz")
    model = vitzoo.create_model("vit_tiny_patch16_224", pretrained=True,
                                pretrained_cfg_overlay=dict(file=str(npz)),
                                **dict(TINY, embed_dim=32, num_heads=4))
    assert model.cfg.gelu_approximate == "tanh" and model.pretrained_cfg["origin"] == "jax"
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(images), atol=1e-6, rtol=0)
