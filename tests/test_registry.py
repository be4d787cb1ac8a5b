"""Registry: names, aliases, wildcards, tags, user registrations and errors."""

from __future__ import annotations

import pytest
import torch

import vitzoo
from vitzoo import DuplicateModelError, UnknownModelError, UnknownTagError, registry
from vitzoo.models.archs import FAMILIES
from vitzoo.registry import natural_key, resolve_name

VIT_ARCHS = [
    "vit_base_patch16_224", "vit_base_patch16_384", "vit_base_patch32_224",
    "vit_base_patch32_384", "vit_base_patch8_224", "vit_huge_patch14_224",
    "vit_large_patch14_224", "vit_large_patch16_224", "vit_large_patch16_384",
    "vit_large_patch32_224", "vit_large_patch32_384", "vit_small_patch16_224",
    "vit_small_patch16_384", "vit_small_patch32_224", "vit_small_patch32_384",
    "vit_small_patch8_224", "vit_tiny_patch16_224", "vit_tiny_patch16_384",
]
HYBRID_ARCHS = [
    "vit_base_r50_s16_224", "vit_base_r50_s16_384", "vit_small_r26_s32_224",
    "vit_small_r26_s32_384", "vit_tiny_r_s16_p8_224", "vit_tiny_r_s16_p8_384",
]
DEIT_ARCHS = [
    "deit_base_distilled_patch16_224", "deit_base_distilled_patch16_384",
    "deit_base_patch16_224", "deit_base_patch16_384", "deit_small_distilled_patch16_224",
    "deit_small_patch16_224", "deit_tiny_distilled_patch16_224", "deit_tiny_patch16_224",
]


def test_every_vit_deit_and_hybrid_architecture_is_registered_once():
    # in timm's natural order: patch8 before patch16, 224 before 384; the modern families'
    # names are checked against timm's in test_families.py
    families = {a.name for name in ("dinov2", "deit3", "clip", "siglip")
                for a in FAMILIES[name]}
    assert [a for a in vitzoo.list_models() if a not in families] == sorted(
        DEIT_ARCHS + VIT_ARCHS + HYBRID_ARCHS, key=natural_key)
    assert len(vitzoo.list_models()) == len(set(vitzoo.list_models())) == 32 + len(families)
    assert vitzoo.list_models(["vit_base_patch?_224", "vit_base_patch??_224"]) == [
        "vit_base_patch8_224", "vit_base_patch16_224", "vit_base_patch32_224"]


def test_wildcards_and_several_patterns():
    assert vitzoo.list_models("deit_*distilled*") == [a for a in DEIT_ARCHS if "distilled" in a]
    assert vitzoo.list_models("vit_*_r[0-9]*") + vitzoo.list_models("vit_*_r_*") == sorted(
        HYBRID_ARCHS, key=natural_key)
    assert vitzoo.list_models(["vit_huge*_224", "vit_large_patch14_2*"]) == [
        "vit_huge_patch14_224", "vit_huge_patch14_clip_224", "vit_huge_patch14_clip_quickgelu_224",
        "vit_large_patch14_224"]
    assert vitzoo.list_models("resnet*") == []


@pytest.mark.parametrize("alias, arch", [
    ("vit_ti16", "vit_tiny_patch16_224"), ("vit_s16", "vit_small_patch16_224"),
    ("vit_s32", "vit_small_patch32_224"), ("vit_b16", "vit_base_patch16_224"),
    ("vit_b32", "vit_base_patch32_224"), ("vit_l16", "vit_large_patch16_224"),
    ("vit_l32", "vit_large_patch32_224"), ("vit_h14", "vit_huge_patch14_224"),
    ("vit_b16_384", "vit_base_patch16_384"), ("deit_ti16", "deit_tiny_patch16_224"),
    ("deit_b16_distilled_384", "deit_base_distilled_patch16_384"),
    ("ViT-B_16", "vit_base_patch16_224"), ("ViT-B_32", "vit_base_patch32_224"),
    ("ViT-L_16", "vit_large_patch16_224"), ("ViT-L_32", "vit_large_patch32_224"),
    ("ViT-H_14", "vit_huge_patch14_224"), ("ViT-Ti_16", "vit_tiny_patch16_224"),
    ("vit-b_16", "vit_base_patch16_224"), ("VIT_B16", "vit_base_patch16_224"),
    ("R50-ViT-B_16", "vit_base_r50_s16_224"), ("R50+ViT-B_16", "vit_base_r50_s16_224"),
    ("R26+ViT-S_32", "vit_small_r26_s32_224"), ("R+ViT-Ti_16", "vit_tiny_r_s16_p8_224"),
])
def test_aliases_resolve_to_architectures(alias, arch):
    assert resolve_name(alias) == (arch, None)
    assert vitzoo.is_model(alias)


def test_tags_resolve_and_unknown_tags_list_the_known_ones():
    assert resolve_name("vit_b16.augreg_in21k") == ("vit_base_patch16_224", "augreg_in21k")
    assert vitzoo.is_model("vit_base_patch16_224.augreg2_in21k_ft_in1k")
    assert not vitzoo.is_model("vit_base_patch16_224.imagenet")
    with pytest.raises(UnknownTagError) as err:
        resolve_name("vit_tiny_patch16_224.augreg_in21k_ft_in22k")
    message = str(err.value)
    assert "Did you mean 'augreg_in21k_ft_in1k'" in message
    assert "Known tags: augreg_in21k_ft_in1k, augreg_in21k." in message
    assert isinstance(err.value, KeyError)


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownModelError) as err:
        resolve_name("vit_base_patch16_244")
    assert str(err.value).startswith("unknown model 'vit_base_patch16_244'. Did you mean "
                                     "'vit_base_patch16_224'")
    assert not vitzoo.is_model("resnet50")
    with pytest.raises(UnknownModelError, match="non-empty string"):
        resolve_name("")


def test_pretrained_listing():
    # timm's rules: pretrained=True lists arch.tag names (include_tags defaults to it), only
    # those with weights; include_tags=False gives the architectures whose default tag has some
    every = vitzoo.list_models()
    assert vitzoo.list_models(pretrained=True, include_tags=False) == [
        a for a in every if a != "vit_large_patch14_224"]  # its one tag is config-only
    assert vitzoo.list_models(pretrained=True) == sorted(vitzoo.list_pretrained(),
                                                         key=natural_key)
    tags = vitzoo.list_pretrained("vit_tiny_patch16_224*")
    assert tags == ["vit_tiny_patch16_224.augreg_in21k_ft_in1k",
                    "vit_tiny_patch16_224.augreg_in21k"]
    assert "vit_base_patch16_224.augreg2_in21k_ft_in1k" in vitzoo.list_pretrained("*augreg2*")
    assert vitzoo.list_pretrained("deit_tiny*") == [
        "deit_tiny_distilled_patch16_224.fb_in1k", "deit_tiny_patch16_224.fb_in1k"]


def test_aliases_listing():
    assert vitzoo.list_aliases("vit_base_patch16_224") == {
        "ViT-B_16": "vit_base_patch16_224", "vit_b16": "vit_base_patch16_224"}


def test_user_variants_register_build_and_list(clean_registry):
    @vitzoo.register_model
    def vit_micro_patch8_32(**overrides):
        return vitzoo.VisionTransformer(vitzoo.SIZES["Ti"].replace(
            **{"patch_size": 8, "img_size": 32, "depth": 2, **overrides}))

    assert "vit_micro_patch8_32" in vitzoo.list_models("vit_micro*")
    assert "vit_micro_patch8_32" not in vitzoo.list_models(pretrained=True)
    model = vitzoo.create_model("vit_micro_patch8_32", num_classes=3)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)
    vitzoo.register_alias("micro", "vit_micro_patch8_32")
    assert vitzoo.create_model("micro").cfg.depth == 2


def test_duplicate_registration_raises(clean_registry):
    def vit_base_patch16_224(**overrides):  # noqa: ARG001
        raise AssertionError("never built")

    with pytest.raises(DuplicateModelError, match="already registered"):
        vitzoo.register_model(vit_base_patch16_224)

    def vit_b16(**overrides):  # noqa: ARG001 - clashes with an alias
        raise AssertionError("never built")

    with pytest.raises(DuplicateModelError):
        vitzoo.register_model(vit_b16)
    with pytest.raises(DuplicateModelError, match="alias 'vit_b16'"):
        vitzoo.register_alias("vit_b16", "vit_large_patch16_224")
    with pytest.raises(UnknownModelError):
        vitzoo.register_alias("mine", "not_a_model")


def test_registered_architectures_are_configs_looked_up_without_building(monkeypatch):
    def no_building(self, cfg=None):
        raise AssertionError("default_config built a model")

    monkeypatch.setattr(vitzoo.VisionTransformer, "__init__", no_building)
    for name in vitzoo.list_models():
        cfg = registry.default_config(name)
        assert isinstance(cfg, vitzoo.ViTConfig)
        assert registry.get_arch(name).cfg is cfg
    assert registry.default_config("vit_b16") == vitzoo.SIZES["B"].replace(patch_size=16)
    assert registry.default_config("deit_ti16_distilled").distilled


def test_a_builder_is_derived_from_its_config():
    builder = registry.get_builder("vit_base_patch16_384")
    assert builder.__name__ == "vit_base_patch16_384"
    assert "ViT-B/16 at 384x384" in builder.__doc__
    with torch.device("meta"):
        model = builder(num_classes=7)
    assert model.cfg == registry.default_config("vit_base_patch16_384").replace(num_classes=7)
    with torch.device("meta"):
        assert type(registry.get_builder("deit_base_distilled_patch16_224")()).__name__ == \
            "DistilledVisionTransformer"


def test_register_config_adds_an_architecture_as_data(clean_registry):
    class Wide(vitzoo.VisionTransformer):
        pass

    cfg = vitzoo.ViTConfig(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    vitzoo.register_config("vit_wide_patch8_32", cfg, summary="A test net.", aliases=["wide"],
                           model_cls=Wide)
    model = vitzoo.create_model("wide", num_classes=3)
    assert type(model) is Wide and model.cfg == cfg.replace(num_classes=3)
    assert registry.default_config("vit_wide_patch8_32") is cfg
    assert vitzoo.model_info("vit_wide_patch8_32").model_class == "Wide"
    with pytest.raises(DuplicateModelError):
        vitzoo.register_config("vit_wide_patch8_32", cfg)


def test_a_user_builders_config_is_read_once_on_the_meta_device(clean_registry):
    built = []

    @vitzoo.register_model
    def vit_counted_patch8_32(**overrides):
        built.append(torch.empty(0).device.type)
        return vitzoo.VisionTransformer(vitzoo.ViTConfig(img_size=32, patch_size=8, embed_dim=32,
                                                         depth=1, num_heads=2, **overrides))

    first = registry.default_config("vit_counted_patch8_32")
    assert registry.default_config("vit_counted_patch8_32") is first
    assert built == ["meta"] and first.depth == 1
