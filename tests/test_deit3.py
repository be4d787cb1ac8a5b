"""DeiT III (facebookresearch/deit ``models_v2.py``) checkpoints, checked against the original.

The fixture (tests/fixtures/make_deit3_fixtures.py) is ``models_v2.vit_models`` with
``Layer_scale_init_Block`` built as ``deit_small_patch16_LS`` builds it (tiny), saved as the
released ``deit_3_*.pth`` are (``{"model": state_dict}``), with its outputs. Measured max |diff|
of vitzoo against models_v2: logits 1.8e-7, pre-head features 4.8e-7.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vitzoo
from vitzoo.adapters import deit3, detect_format
from vitzoo.errors import CheckpointMismatchError
from vitzoo.io import load_state_dict

DATA = Path(__file__).parent / "data" / "deit3"
PTH = DATA / "deit3_tiny.pth"
ATOL = 2e-6  # measured: logits 1.8e-7, features 4.8e-7


@pytest.fixture(scope="module")
def ref() -> dict[str, torch.Tensor]:
    return load_file(DATA / "deit3_tiny_ref.safetensors")


def _check(model, ref) -> None:
    model.eval()
    with torch.no_grad():
        logits = model(ref["images"])
        features = model.forward_head(model.forward_features(ref["images"]), pre_logits=True)
    torch.testing.assert_close(logits, ref["logits"], rtol=0, atol=ATOL)
    torch.testing.assert_close(features, ref["features"], rtol=0, atol=ATOL)


def test_load_model_reproduces_models_v2(ref):
    _check(vitzoo.load_model(PTH), ref)


def test_architecture_and_numerics_are_read_off_the_file():
    model = vitzoo.load_model(PTH)
    cfg = model.cfg
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_dim) == (32, 2, 1, 128)
    assert (cfg.patch_size, cfg.img_size, cfg.num_classes) == ((8, 8), (24, 24), 10)
    assert cfg.no_embed_class and cfg.class_token and cfg.init_values is not None
    assert (cfg.norm_eps, cfg.gelu_approximate, cfg.global_pool) == (1e-6, "none", "token")
    pre = model.pretrained_cfg
    assert pre["mean"] == (0.485, 0.456, 0.406) and pre["std"] == (0.229, 0.224, 0.225)
    assert (pre["interpolation"], pre["crop_pct"]) == ("bicubic", 0.9)


def test_detection_needs_layer_scale_names_and_a_table_without_class_row():
    raw = load_state_dict(PTH)
    assert detect_format(raw) == "deit3"
    classic = dict(raw, pos_embed=torch.zeros(1, 10, 32))  # 1 + 3x3 rows
    assert not deit3.detect(classic)
    converted, unmatched = deit3.to_vitzoo(raw)
    assert unmatched == [] and "blocks.1.ls2.gamma" in converted
    assert detect_format(converted) == "timm"


@pytest.mark.parametrize(("width", "heads"), [(384, 6), (512, 8), (768, 12), (1024, 16),
                                              (1280, 16), (32, 1)])
def test_heads_follow_deit3s_head_dim(width, heads):
    assert deit3.num_heads_for(width) == heads


def test_preprocessing_crop_follows_timm_by_resolution():
    state, _ = deit3.to_vitzoo(load_state_dict(PTH))
    big = dict(state, **{"pos_embed": torch.zeros(1, 48 * 48, 32)})  # 384 px at patch 8
    assert deit3.preprocessing(big)["crop_pct"] == 1.0
    assert deit3.preprocessing(big)["input_size"] == (3, 384, 384)


def test_convert_round_trip_gives_the_same_logits(ref, tmp_path):
    dst = vitzoo.convert_checkpoint(PTH, tmp_path / "deit3.safetensors")
    model = vitzoo.load_model(dst)
    assert model.cfg.no_embed_class
    _check(model, ref)


def test_deit3_into_a_classic_vit_names_the_missing_class_row():
    classic = vitzoo.VisionTransformer(vitzoo.ViTConfig(
        img_size=(24, 24), patch_size=(8, 8), embed_dim=32, depth=2, num_heads=1,
        num_classes=10, init_values=1e-6))
    with pytest.raises(CheckpointMismatchError) as err:
        vitzoo.load_checkpoint(classic, PTH)
    message = str(err.value)
    assert "no_embed_class" in message and "class token" in message
    assert "image sizes differ" not in message


def test_timm_state_dict_loads_strictly_and_matches_timm():
    """timm's ``checkpoint_filter_fn(adapt_layer_scale=True)`` of the file; timm vs models_v2
    logits: 1.8e-7."""
    state = load_file(DATA / "deit3_tiny_timm.safetensors")
    timm_out = load_file(DATA / "deit3_tiny_timm_ref.safetensors")
    images = load_file(DATA / "deit3_tiny_ref.safetensors")["images"]
    model = vitzoo.VisionTransformer(vitzoo.load_model(PTH).cfg).eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model(images), timm_out["logits"], rtol=0, atol=ATOL)
        torch.testing.assert_close(model.forward_features(images), timm_out["features"],
                                   rtol=0, atol=ATOL)
