"""ViTDet's simple feature pyramid: each level against the same arithmetic written out with
torch.nn.functional, the strides of the paper, and its use over vitzoo backbones."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vitzoo
from vitzoo.layers import SimpleFeaturePyramid

TINY = dict(img_size=64, patch_size=16, embed_dim=32, depth=3, num_heads=4, mlp_dim=64)


def _channel_ln(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """detectron2's LayerNorm over the channels of (B, C, H, W), written out."""
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    y = (x - mean) / torch.sqrt(var + norm.eps)
    return norm.weight[:, None, None] * y + norm.bias[:, None, None]


def _randomise(module: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if p.ndim == 1 else 0.0))
    return module


def _level(stage: nn.Sequential, x: torch.Tensor, scale: float) -> torch.Tensor:
    """One level by hand: resample, then conv 1x1 + LN, conv 3x3 + LN (no biases)."""
    layers = list(stage)
    if scale == 4.0:
        up1, ln, _, up2 = layers[:4]
        x = F.conv_transpose2d(x, up1.weight, up1.bias, stride=2)
        x = F.gelu(_channel_ln(x, ln))
        x = F.conv_transpose2d(x, up2.weight, up2.bias, stride=2)
    elif scale == 2.0:
        x = F.conv_transpose2d(x, layers[0].weight, layers[0].bias, stride=2)
    elif scale == 0.5:
        x = F.max_pool2d(x, kernel_size=2, stride=2)
    conv1, ln1, conv3, ln3 = layers[-4:]
    assert conv1.bias is None and conv3.bias is None
    x = _channel_ln(F.conv2d(x, conv1.weight), ln1)
    return _channel_ln(F.conv2d(x, conv3.weight, padding=1), ln3)


def test_each_level_is_vitdets_arithmetic():
    pyramid = _randomise(SimpleFeaturePyramid(32, out_channels=8, in_stride=16))
    x = torch.randn(2, 32, 6, 5)
    with torch.no_grad():
        outputs = pyramid(x)
        for out, stage, scale in zip(outputs, pyramid.stages, (4.0, 2.0, 1.0, 0.5),
                                     strict=True):
            torch.testing.assert_close(out, _level(stage, x, scale), atol=1e-5, rtol=1e-5)
    assert [o.shape for o in outputs] == [(2, 8, 24, 20), (2, 8, 12, 10), (2, 8, 6, 5),
                                          (2, 8, 3, 2)]
    assert [s[0].in_channels if isinstance(s[0], nn.ConvTranspose2d) else None
            for s in pyramid.stages] == [32, 32, None, None]
    assert pyramid.stages[0][3].out_channels == 8  # 32 -> 16 -> 8 = D / 4, as ViTDet


def test_strides_and_feature_info_are_the_papers():
    pyramid = SimpleFeaturePyramid(768, top_block=True)
    assert [f["reduction"] for f in pyramid.feature_info] == [4, 8, 16, 32, 64]
    assert [f["name"] for f in pyramid.feature_info] == ["p2", "p3", "p4", "p5", "p6"]
    assert {f["num_chs"] for f in pyramid.feature_info} == {256}
    assert [f["module"] for f in pyramid.feature_info][:2] == ["stages.0", "stages.1"]
    x = torch.randn(1, 768, 4, 4)
    with torch.no_grad():
        outputs = pyramid(x)
    assert [o.shape[-1] for o in outputs] == [16, 8, 4, 2, 1]
    torch.testing.assert_close(outputs[4], outputs[3][..., ::2, ::2], atol=0, rtol=0)
    partial = SimpleFeaturePyramid(96, scale_factors=(2.0, 1.0), in_stride=8)
    assert [f["reduction"] for f in partial.feature_info] == [4, 8]


def test_a_pyramid_over_a_vit_uses_its_last_block_and_prunes_the_rest():
    torch.manual_seed(0)
    model = vitzoo.create_model("vit_tiny_patch16_224", **TINY, dynamic_img_size=True).eval()
    reference = copy.deepcopy(model)
    pyramid = SimpleFeaturePyramid.from_backbone(model, out_channels=8)
    assert pyramid.backbone is model and pyramid.in_stride == 16
    assert isinstance(model.head, nn.Identity) and isinstance(model.norm, nn.Identity)
    images = torch.randn(2, 3, 48, 80)  # any size with dynamic_img_size
    with torch.no_grad():
        last = reference.forward_intermediates(images, indices=1, intermediates_only=True)[-1]
        expected = _levels(pyramid, last)
        outputs = pyramid(images)
    assert [o.shape[-2:] for o in outputs] == [(12, 20), (6, 10), (3, 5), (1, 2)]
    for ours, theirs in zip(outputs, expected, strict=True):
        torch.testing.assert_close(ours, theirs, atol=0, rtol=0)
    sum(o.sum() for o in pyramid(images)).backward()
    assert all(p.grad is not None for p in pyramid.parameters())  # none unused (DDP)


def _levels(pyramid: SimpleFeaturePyramid, feature_map: torch.Tensor) -> list[torch.Tensor]:
    """The pyramid's levels of a given map (its stages, without the backbone)."""
    return [stage(feature_map) for stage in pyramid.stages]


def test_pyramids_over_deit_hybrid_and_features_only_backbones():
    deit = vitzoo.create_model("deit_tiny_distilled_patch16_224", **TINY)
    assert [o.shape[-1] for o in SimpleFeaturePyramid.from_backbone(deit, out_channels=4)(
        torch.randn(1, 3, 64, 64))] == [16, 8, 4, 2]
    hybrid = vitzoo.create_model("vit_small_r26_s32_224", img_size=64, depth=1, embed_dim=32,
                                 num_heads=4, mlp_dim=64)
    pyramid = SimpleFeaturePyramid.from_backbone(hybrid, out_channels=4)
    assert [f["reduction"] for f in pyramid.feature_info] == [8, 16, 32, 64]
    assert [o.shape[-1] for o in pyramid(torch.randn(1, 3, 64, 64))] == [8, 4, 2, 1]
    torch.manual_seed(0)
    features = vitzoo.create_model("vit_tiny_patch16_224", features_only=True, norm=True,
                                   **TINY).eval()
    pyramid = SimpleFeaturePyramid.from_backbone(features, out_channels=4)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = _levels(pyramid, features(images)[-1])
        for ours, theirs in zip(pyramid(images), expected, strict=True):
            torch.testing.assert_close(ours, theirs, atol=0, rtol=0)


def test_init_weights_touches_the_pyramid_only():
    model = vitzoo.create_model("vit_tiny_patch16_224", **TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pyramid = SimpleFeaturePyramid.from_backbone(model, out_channels=64)
    pyramid.init_weights("jax")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], atol=0, rtol=0)
    conv3 = pyramid.stages[2][2]  # (64, 64, 3, 3): fan-in 576
    assert conv3.weight.std().item() == pytest.approx(math.sqrt(1 / 576), rel=0.05)
    up = pyramid.stages[1][0]  # a transposed (32 -> 16) kernel: fan-in 32 * 2 * 2
    assert up.weight.std().item() == pytest.approx(math.sqrt(1 / 128), rel=0.15)
    assert torch.count_nonzero(up.bias) == 0
    norm = pyramid.stages[2][1]
    assert torch.equal(norm.weight, torch.ones(64)) and torch.equal(norm.bias, torch.zeros(64))
    with pytest.raises(vitzoo.ConfigError, match="weight_init"):
        pyramid.init_weights("xavier")


def test_bad_pyramid_arguments_fail_with_config_errors():
    with pytest.raises(vitzoo.ConfigError, match="3.0"):
        SimpleFeaturePyramid(32, scale_factors=(3.0,))
    with pytest.raises(vitzoo.ConfigError, match="whole number"):
        SimpleFeaturePyramid(32, in_stride=14)
    with pytest.raises(vitzoo.ConfigError, match="divisible by 4"):
        SimpleFeaturePyramid(30)
    with pytest.raises(vitzoo.ConfigError, match="fine to coarse"):
        SimpleFeaturePyramid(32, scale_factors=(1.0, 2.0))
    with pytest.raises(vitzoo.ConfigError, match="empty"):
        SimpleFeaturePyramid(32, scale_factors=())
