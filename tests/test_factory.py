"""create_model: names, defaults from the tag, overrides, pretrained_cfg and checkpoint_path."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import vitzoo
from vitzoo import CheckpointMismatchError, UnknownOverrideError, VitzooError


def _meta(name: str, **kwargs) -> vitzoo.VisionTransformer:
    with torch.device("meta"):
        return vitzoo.create_model(name, **kwargs)


def test_names_aliases_and_tags_build_the_same_architecture():
    cfgs = {_meta(n).cfg for n in ("vit_base_patch16_224", "vit_b16", "ViT-B_16",
                                   "vit_base_patch16_224.augreg_in1k")}
    assert len(cfgs) == 1


def test_default_num_classes_comes_from_the_tags_weights():
    assert _meta("vit_huge_patch14_224").num_classes == 0  # orig_in21k heads were zeroed
    assert _meta("vit_tiny_patch16_224").num_classes == 1000
    assert _meta("vit_tiny_patch16_224.augreg_in21k").num_classes == 21843
    assert _meta("vit_small_patch8_224").num_classes == 0  # dino
    assert _meta("vit_huge_patch14_224", num_classes=1000).num_classes == 1000


def test_overrides_reach_the_config():
    model = _meta("vit_s16", num_classes=10, img_size=(384, 256), in_chans=1,
                  drop_path_rate=0.1, global_pool="avg", fc_norm=True,
                  gelu_approximate="tanh", norm_eps=1e-5)
    cfg = model.cfg
    assert (cfg.num_classes, cfg.img_size, cfg.in_chans) == (10, (384, 256), 1)
    assert model.pos_embed.shape == (1, 1 + 24 * 16, 384)
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    assert model.blocks[0].mlp.act.approximate == "tanh"
    assert model.blocks[0].norm1.eps == 1e-5
    assert model.head.out_features == 10


def test_misspelt_override_raises_at_the_call():
    with pytest.raises(UnknownOverrideError) as err:
        vitzoo.create_model("vit_ti16", drop_pat_rate=0.1)
    assert "Did you mean 'drop_path_rate'" in str(err.value)
    assert "Valid fields:" in str(err.value)


def test_pretrained_offline_without_a_copy_names_file_sources_and_caches(tmp_path):
    from vitzoo.hub import OfflineError

    with pytest.raises(OfflineError) as err:
        vitzoo.create_model("vit_ti16", pretrained=True)
    message = str(err.value)
    assert "vit_tiny_patch16_224.augreg_in21k_ft_in1k" in message
    assert "File: model.safetensors" in message
    assert "hf-hub:timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k" in message
    assert "storage.googleapis.com/vit_models/augreg/Ti_16-i21k" in message
    assert "vitzoo download" in message
    assert isinstance(err.value, VitzooError) and isinstance(err.value, FileNotFoundError)
    with pytest.raises(VitzooError, match="has no pretrained weights"):
        vitzoo.create_model("vit_large_patch14_224", pretrained=True)


def test_pretrained_cfg_describes_the_preprocessing():
    vit = _meta("vit_base_patch16_224").pretrained_cfg
    assert vit["tag"] == "augreg2_in21k_ft_in1k"
    assert vit["mean"] == vit["std"] == (0.5, 0.5, 0.5)
    assert (vit["input_size"], vit["crop_pct"], vit["interpolation"]) == (
        (3, 224, 224), 0.9, "bicubic")
    deit = _meta("deit_small_patch16_224").pretrained_cfg
    assert deit["mean"] == (0.485, 0.456, 0.406) and deit["std"] == (0.229, 0.224, 0.225)
    assert deit["crop_pct"] == 0.9  # timm's value for these weights (DeiT's own: 0.875)
    assert _meta("vit_b16_384").pretrained_cfg["crop_pct"] == 1.0
    dino = _meta("vit_small_patch16_224.dino").pretrained_cfg
    assert dino["mean"] == (0.485, 0.456, 0.406) and dino["num_classes"] == 0


def _tiny_arch_weights(tmp_path):
    source = vitzoo.create_model("vit_ti16", num_classes=3, depth=1).eval()
    path = tmp_path / "weights.safetensors"
    save_file(source.state_dict(), str(path))
    return source, path


def test_checkpoint_path_loads_the_weights(tmp_path):
    source, path = _tiny_arch_weights(tmp_path)
    model = vitzoo.create_model("vit_ti16", num_classes=3, depth=1,
                                checkpoint_path=path).eval()
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(model(x), source(x), atol=0, rtol=0)


def test_checkpoint_for_another_architecture_is_reported_by_key_group(tmp_path):
    _, path = _tiny_arch_weights(tmp_path)
    with pytest.raises(CheckpointMismatchError) as err:
        vitzoo.create_model("vit_ti16", num_classes=5, depth=2, checkpoint_path=path)
    message = str(err.value)
    assert "missing from the checkpoint (12): blocks.*.norm1.weight" in message
    assert "head.weight (3, 192) in the file vs (5, 192) in the model" in message
    assert "strict=False" in message


def test_the_public_api_of_the_design_is_importable():
    names = ["create_model", "load_model", "load_checkpoint", "convert_checkpoint",
             "list_models", "list_pretrained", "is_model", "register_model", "model_info",
             "resolve_data_config", "create_transform", "VisionTransformer", "VitzooError"]
    assert all(hasattr(vitzoo, n) for n in names)
    assert all(n in vitzoo.__all__ for n in names)
    for layer in ("PatchEmbed", "Attention", "Mlp", "Block", "DropPath"):
        assert hasattr(vitzoo.layers, layer)
    model = vitzoo.create_model("vit_ti16", img_size=32, patch_size=8, depth=1, num_classes=3)
    config = vitzoo.resolve_data_config(model)
    assert config["input_size"] == (3, 32, 32) and config["mean"] == (0.5, 0.5, 0.5)
    image = torch.rand(3, 40, 48)
    assert vitzoo.create_transform(config)(image).shape == (3, 32, 32)
