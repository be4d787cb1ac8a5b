"""The R+ViT hybrids: TF "SAME" padding, weight standardisation, GroupNorm, bottlenecks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitzoo
from vitzoo import ConfigError, build_model
from vitzoo.layers.std_conv import MaxPool2dSame, StdConv2dSame, pad_same, standardize_weight
from vitzoo.models.hybrid import ResNetV2, build_resnet_backbone

from conftest import tiny_cfg


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (224, 7, 2, (2, 3)), (112, 3, 2, (0, 1)), (56, 3, 1, (1, 1)), (56, 1, 2, (0, 0)),
    (15, 7, 2, (3, 3)), (15, 3, 2, (1, 1)),
])
def test_same_padding_is_tensorflows(size, kernel, stride, expected):
    padded = pad_same(torch.ones(1, 1, size, size), kernel, stride)  # pads with zeros
    column = padded[0, 0, :, padded.shape[-1] // 2]
    rows = column.tolist()
    top = next(i for i, v in enumerate(rows) if v == 1.0)
    bottom = next(i for i, v in enumerate(reversed(rows)) if v == 1.0)
    assert (top, bottom) == expected
    assert padded.shape[-1] - size == sum(expected)  # the same on the width
    assert (padded.shape[-1] - kernel) // stride + 1 == -(-size // stride)  # out = ceil(in / s)


def test_weight_standardisation_adds_eps_to_the_std():
    w = torch.randn(8, 3, 3, 3, dtype=torch.float64) * 0.01
    a = w.numpy().reshape(8, -1)
    expected = (a - a.mean(1, keepdims=True)) / (a.std(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(standardize_weight(w).numpy().reshape(8, -1), expected,
                               atol=1e-12, rtol=0)
    timm_form = (a - a.mean(1, keepdims=True)) / np.sqrt(a.var(1, keepdims=True) + 1e-8)
    assert np.abs(expected - timm_form).max() > 1e-4  # the forms differ measurably


def test_std_conv_same_is_pad_then_standardised_conv():
    conv = StdConv2dSame(3, 8, 7, stride=2).double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    expected = F.conv2d(F.pad(x, (2, 3, 2, 3)), standardize_weight(conv.weight), stride=2)
    torch.testing.assert_close(conv(x), expected, atol=1e-12, rtol=0)
    assert conv(x).shape == (2, 8, 8, 8) and conv.bias is None


def test_max_pool_same_pads_with_minus_infinity():
    x = -1.0 - torch.rand(1, 2, 6, 6)  # all negative: zero padding would win the max
    out = MaxPool2dSame(3, 2)(x)
    assert out.shape == (1, 2, 3, 3)
    assert torch.all(out < 0)
    torch.testing.assert_close(out[..., -1, -1], x[..., 4:, 4:].amax(dim=(-2, -1)))


def _randomise(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.ndim == 1 else 0.0))
    return model


def test_bottleneck_is_post_activation_with_stride_on_the_3x3():
    backbone = _randomise(ResNetV2((1, 1), width=32).double()).eval()
    unit = backbone.stages[1].blocks[0]
    assert unit.conv2.stride == (2, 2) and unit.conv1.stride == (1, 1)
    assert unit.downsample.conv.stride == (2, 2)
    x = torch.randn(1, 128, 8, 8, dtype=torch.float64)
    y = F.relu(unit.norm1(unit.conv1(x)))
    y = F.relu(unit.norm2(unit.conv2(y)))
    y = unit.norm3(unit.conv3(y))
    expected = F.relu(unit.downsample.norm(unit.downsample.conv(x)) + y)
    torch.testing.assert_close(unit(x), expected, atol=1e-12, rtol=0)
    assert unit.norm1.eps == 1e-6 and unit.norm1.num_groups == 32


def test_identity_units_have_no_projection():
    backbone = ResNetV2((2,), width=32)
    first, second = backbone.stages[0].blocks
    assert first.downsample is not None  # 32 -> 128 channels
    assert second.downsample is None
    assert not any("blocks.1.downsample" in k for k in backbone.state_dict())


@pytest.mark.parametrize("layers", [(), (1,), (1, 1), (1, 1, 1)])
@pytest.mark.parametrize("size", [32, 45, 64, 100])
def test_feature_size_follows_the_same_padding_arithmetic(layers, size):
    cfg = tiny_cfg(img_size=size, patch_size=1, backbone_layers=layers, backbone_width=32)
    backbone, channels = build_resnet_backbone(layers, width=32)
    with torch.device("meta"):
        out = backbone.to("meta")(torch.empty(1, 3, size, size))
    assert tuple(out.shape[-2:]) == cfg.feature_size
    assert out.shape[1] == channels


def test_stem_only_backbone_has_timms_flat_keys():
    model = build_model(tiny_cfg(backbone_layers=(), backbone_width=32, patch_size=2))
    keys = [k for k in model.state_dict() if k.startswith("patch_embed.")]
    assert keys == ["patch_embed.backbone.conv.weight", "patch_embed.backbone.norm.weight",
                    "patch_embed.backbone.norm.bias", "patch_embed.proj.weight",
                    "patch_embed.proj.bias"]


def test_hybrid_forward_is_backbone_then_patch_projection(images):
    model = _randomise(build_model(tiny_cfg(backbone_layers=(1, 1), backbone_width=32,
                                            patch_size=1))).eval()
    assert model.patch_embed.grid_size == (4, 4)
    fmap = model.patch_embed.backbone(images)
    assert fmap.shape == (2, 256, 4, 4)
    tokens = model.patch_embed.proj(fmap).flatten(2).transpose(1, 2)
    torch.testing.assert_close(model.patch_embed(images), tokens, atol=1e-6, rtol=0)
    assert model(images).shape == (2, 5)


def test_gradients_reach_every_hybrid_parameter(images):
    model = _randomise(build_model(tiny_cfg(backbone_layers=(1, 1), backbone_width=32,
                                            patch_size=1))).train()
    (model(images) * torch.randn(2, 5)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("mode", ["timm", "jax"])
def test_units_start_as_their_shortcut(mode):
    model = build_model(tiny_cfg(backbone_layers=(1, 1), backbone_width=32, patch_size=1,
                                 weight_init=mode))
    norms3 = [m.norm3.weight for m in model.patch_embed.backbone.modules() if hasattr(m, "norm3")]
    assert len(norms3) == 2 and all(torch.all(w == 0) for w in norms3)
    conv = model.patch_embed.backbone.stem.conv.weight
    assert conv.abs().max() > 0


def test_hybrid_input_checks_and_config_errors():
    model = build_model(tiny_cfg(backbone_layers=(), backbone_width=32, patch_size=2))
    with pytest.raises(vitzoo.ImageSizeError, match="takes 32x32 images"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ConfigError, match="backbone_width must be a positive multiple of 32"):
        tiny_cfg(backbone_layers=(1,), backbone_width=48)
    with pytest.raises(ConfigError, match="backbone_layers must be a sequence"):
        tiny_cfg(backbone_layers=(0,))
    with pytest.raises(ConfigError, match="feature map, smaller than patch_size"):
        tiny_cfg(backbone_layers=(1, 1), patch_size=8)


def test_hybrid_config_round_trips_through_a_dict():
    cfg = tiny_cfg(backbone_layers=[3, 4, 9], patch_size=1)
    assert cfg.backbone_layers == (3, 4, 9)
    assert cfg.to_dict()["backbone_layers"] == [3, 4, 9]
    assert vitzoo.ViTConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name, grid", [
    ("vit_base_r50_s16_224", (14, 14)), ("vit_base_r50_s16_384", (24, 24)),
    ("vit_small_r26_s32_224", (7, 7)), ("vit_tiny_r_s16_p8_384", (12, 12)),
])
def test_registered_hybrids_have_the_papers_grids(name, grid):
    with torch.device("meta"):
        model = vitzoo.create_model(name)
    assert model.patch_embed.grid_size == grid
