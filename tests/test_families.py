"""The modern families as registered: DINOv2 (+registers), DeiT III, CLIP and SigLIP.

Their state-dict layouts and pretrained tags are checked against what timm 1.0.31 builds and
says (tests/data/timm_family_keys.json, written by
tests/fixtures/make_timm_family_keys.py); parameter counts are in test_param_counts.py, the
original releases' files in test_dinov2.py, test_deit3.py, test_clip.py and test_siglip.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import torch

import vitzoo
from vitzoo.models.archs import FAMILIES
from vitzoo.models.archs.siglip import TIMM_ERF_GELU
from vitzoo.pretrained import get_entry, tags_for

from conftest import hf_cache_with

TIMM = json.loads((Path(__file__).parent / "data" / "timm_family_keys.json").read_text())
LAYOUTS = TIMM["layouts"]
FAMILY_ARCHS = {a.name: family for family in ("dinov2", "deit3", "clip", "siglip")
                for a in FAMILIES[family]}


def _layout(model: torch.nn.Module) -> dict:
    outside, blocks = {}, {}
    for key, value in model.state_dict().items():
        m = re.match(r"blocks\.(\d+)\.(.*)", key)
        if m is None:
            outside[key] = list(value.shape)
        else:
            blocks.setdefault(int(m.group(1)), {})[m.group(2)] = list(value.shape)
    assert all(b == blocks[0] for b in blocks.values())  # every block alike
    return {"depth": len(blocks), "outside": outside, "block0": blocks[0]}


def test_every_timm_architecture_of_the_families_is_registered():
    assert sorted(LAYOUTS) == sorted(FAMILY_ARCHS)


@pytest.mark.parametrize("arch", sorted(LAYOUTS))
def test_state_dict_layout_is_timms(arch):
    """Same keys, same shapes: a timm state dict of the architecture loads with strict=True."""
    with torch.device("meta"):
        model = vitzoo.create_model(arch)
    expected = {k: LAYOUTS[arch][k] for k in ("depth", "outside", "block0")}
    assert _layout(model) == expected


@pytest.mark.parametrize("arch", sorted(LAYOUTS))
def test_tags_and_their_preprocessing_are_timms(arch):
    theirs = LAYOUTS[arch]["tags"]
    ours = tags_for(arch)
    assert ours[0] == theirs[0]["tag"]  # the same default
    assert sorted(ours) == sorted(t["tag"] for t in theirs)
    for tag in theirs:
        entry = get_entry(arch, tag["tag"])
        assert (entry.num_classes, (3, entry.img_size, entry.img_size)) == (
            tag["num_classes"], tuple(tag["input_size"]))
        assert (entry.crop_pct, entry.crop_mode, entry.interpolation, entry.license) == (
            tag["crop_pct"], tag["crop_mode"], tag["interpolation"], tag["license"])
        assert (entry.mean, entry.std) == (tuple(tag["mean"]), tuple(tag["std"]))
        assert entry.hf_hub_id == tag["hf_hub_id"]


@pytest.mark.parametrize("alias, name", [
    ("dinov2_vits14", ("vit_small_patch14_dinov2", None)),
    ("dinov2_vitg14_reg", ("vit_giant_patch14_reg4_dinov2", None)),
    ("deit_base_patch16_LS", ("deit3_base_patch16_224", None)),
    ("ViT-B-32", ("vit_base_patch32_clip_224", None)),
    ("ViT-L-14-336-quickgelu", ("vit_large_patch14_clip_quickgelu_336", None)),
    ("ViT-bigG-14", ("vit_gigantic_patch14_clip_224", None)),
    ("siglip_so400m_patch14_384", ("vit_so400m_patch14_siglip_384", "webli")),
    ("ViT-SO400M-14-SigLIP-384", ("vit_so400m_patch14_siglip_384", "webli")),
    ("ViT-B-16-SigLIP2-256", ("vit_base_patch16_siglip_256", "v2_webli")),
    ("ViT-B-16-SigLIP-i18n-256", ("vit_base_patch16_siglip_256", "webli_i18n")),
    ("siglip2_giant_opt_patch16_384", ("vit_giantopt_patch16_siglip_384", "v2_webli")),
])
def test_original_names_are_aliases(alias, name):
    assert vitzoo.registry.resolve_name(alias) == name
    if name[1] is not None:  # a weight set: its own tag still wins when given
        other = tags_for(name[0])[-1]
        assert vitzoo.registry.resolve_name(f"{alias}.{other}") == (name[0], other)


def test_each_family_is_configured_as_its_original():
    dinov2 = vitzoo.registry.default_config("vit_base_patch14_dinov2")
    reg = vitzoo.registry.default_config("vit_base_patch14_reg4_dinov2")
    giant = vitzoo.registry.default_config("vit_giant_patch14_dinov2")
    assert dinov2.dynamic_img_size and dinov2.init_values and not dinov2.no_embed_class
    assert (reg.reg_tokens, reg.no_embed_class, reg.num_prefix_tokens) == (4, True, 5)
    assert (giant.mlp_layer, giant.mlp_dim) == ("swiglu", 4096)
    deit3 = vitzoo.registry.default_config("deit3_medium_patch16_224")
    assert deit3.no_embed_class and deit3.init_values == 1e-6 and deit3.num_pos_prefix_tokens == 0
    clip = vitzoo.registry.default_config("vit_base_patch16_clip_224")
    assert (clip.pre_norm, clip.patch_bias, clip.norm_eps, clip.act_layer) == (
        True, False, 1e-5, "gelu")
    assert vitzoo.registry.default_config("vit_base_patch16_clip_quickgelu_224").act_layer \
        == "quick_gelu"
    for arch in (a.name for a in FAMILIES["siglip"]):
        siglip = vitzoo.registry.default_config(arch)
        assert not siglip.class_token and siglip.gelu_approximate == "tanh"
        assert siglip.global_pool == ("avg" if "_gap_" in arch else "map")
    assert "vit_base_patch16_siglip_224" in TIMM_ERF_GELU  # documented in docs/models.md
    assert "vit_so400m_patch16_siglip_256" not in TIMM_ERF_GELU


@pytest.mark.parametrize("name, quick_gelu", [
    ("vit_base_patch16_clip_224.openai", True),  # OpenAI's weights, under the plain name too
    ("vit_base_patch32_clip_224.laion400m_e32", True),
    ("vit_large_patch14_clip_224.dfn2b", True),
    ("vit_large_patch14_clip_224.dfn2b_s39b", False),
    ("vit_base_patch16_clip_224.laion2b", False),
    ("vit_base_patch16_clip_224.openai_ft_in1k", False),  # fine-tuned by timm with erf GELU
    ("vit_huge_patch14_clip_quickgelu_224.dfn5b", True),
])
def test_quickgelu_follows_the_weights(name, quick_gelu):
    arch, tag = vitzoo.registry.resolve_name(name)
    entry = get_entry(arch, tag)
    cfg = vitzoo.registry.default_config(arch).replace(**entry.numerics)
    assert (cfg.act_layer == "quick_gelu") == quick_gelu


@pytest.mark.parametrize("name", [
    "vit_small_patch14_reg4_dinov2.lvd142m",
    "vit_xsmall_patch16_clip_224.tinyclip_yfcc15m",
    "vit_base_patch32_siglip_256.v2_webli",
])
def test_pretrained_offline_from_a_prepared_hub_cache(name):
    arch, tag = vitzoo.registry.resolve_name(name)
    entry = get_entry(arch, tag)
    source = vitzoo.create_model(name)  # random weights, saved as timm's hub file
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    hf_cache_with(entry.hf_hub_id, {k: v.contiguous() for k, v in source.state_dict().items()})
    model = vitzoo.create_model(name, pretrained=True)
    assert model.pretrained_cfg["tag"] == tag and model.load_report.ok
    side = 112 if model.cfg.dynamic_img_size else entry.img_size  # DINOv2 takes any size
    x = torch.randn(1, 3, side, side)
    with torch.no_grad():
        expected = source.eval()(x)
        assert torch.equal(model(x), expected)
    assert model.cfg.gelu_approximate == ("tanh" if entry.origin == "jax" else "none")


DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("src", ["dinov2/reg4.pth", "deit3/deit3_tiny.pth",
                                 "clip/openai_tiny.pt", "clip/open_clip_quickgelu"])
def test_convert_verify_checks_an_original_release_against_its_own_model(src, tmp_path):
    out = tmp_path / "out.safetensors"
    vitzoo.convert_checkpoint(DATA / src, out, verify=True)
    source, converted = vitzoo.load_model(DATA / src), vitzoo.load_model(out)
    x = torch.rand(2, 3, *source.cfg.img_size)
    with torch.no_grad():
        assert torch.equal(converted(x), source(x))
    assert converted.cfg == source.cfg


def test_convert_verify_refuses_a_file_that_changes_on_the_way(tmp_path, monkeypatch):
    real = vitzoo.convert.read_source

    def tampered(path, **kwargs):  # the written file reads back with one tensor changed
        source = real(path, **kwargs)
        if kwargs.get("source_format") == "vitzoo":
            key = "blocks.0.mlp.fc1.weight"  # not a constant shift, which a LayerNorm removes
            noise = torch.randn(source.state[key].shape, generator=torch.Generator().manual_seed(0))
            source.state[key] = source.state[key] + 1e-3 * noise
        return source

    monkeypatch.setattr(vitzoo.convert, "read_source", tampered)
    out = tmp_path / "out.safetensors"
    with pytest.raises(vitzoo.errors.VerificationError, match="other outputs than its source"):
        vitzoo.convert_checkpoint(DATA / "deit3" / "deit3_tiny.pth", out, verify=True)
    assert not out.exists()  # nothing half-written


def test_an_open_clip_hub_repo_loads_by_name_from_the_cache(tmp_path):
    """``hf-hub:`` names of open_clip repos read open_clip's files (the repos also hold
    transformers' ``config.json``, which is not a ViT config)."""
    repo = Path(os.environ["HF_HOME"]) / "hub" / "models--laion--tiny-clip"
    commit = hashlib.sha1(b"tiny-clip").hexdigest()
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for file in (DATA / "clip" / "open_clip_gelu").iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (snapshot / "config.json").write_text(json.dumps({"model_type": "clip"}))
    model = vitzoo.create_model("hf-hub:laion/tiny-clip")
    expected = vitzoo.load_model(DATA / "clip" / "open_clip_gelu")
    x = torch.rand(1, 3, *model.cfg.img_size)
    with torch.no_grad():
        assert torch.equal(model(x), expected(x))
