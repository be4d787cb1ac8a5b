"""DeiT's distillation token: token order, the two heads, and the distillation method."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vitzoo import ConfigError, DistilledVisionTransformer, ViTConfig, build_model

from conftest import tiny_cfg
from test_vision_transformer import _manual_forward_features, _randomise


def test_distilled_config_builds_a_distilled_model():
    model = build_model(tiny_cfg(distilled=True))
    assert isinstance(model, DistilledVisionTransformer)
    assert model.num_prefix_tokens == 2
    assert model.pos_embed.shape == (1, 2 + 16, 32)
    assert model.dist_token.shape == (1, 1, 32)
    assert isinstance(model.head_dist, nn.Linear) and model.head_dist.out_features == 5


def test_tokens_are_class_then_distillation_then_patches(images):
    model = _randomise(build_model(tiny_cfg(distilled=True))).eval()
    torch.testing.assert_close(model.forward_features(images),
                               _manual_forward_features(model, images), atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_forward_returns_the_mean_of_both_heads(images, mode):
    model = _randomise(build_model(tiny_cfg(distilled=True)))
    getattr(model, mode)()
    torch.manual_seed(3)
    logits = model(images)
    torch.manual_seed(3)
    features = model.forward_features(images)
    expected = (model.head(features[:, 0]) + model.head_dist(features[:, 1])) / 2
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=0)


def test_forward_distill_returns_both_logits(images):
    model = _randomise(build_model(tiny_cfg(distilled=True))).eval()
    cls_logits, dist_logits = model.forward_distill(images)
    features = model.forward_features(images)
    torch.testing.assert_close(cls_logits, model.head(features[:, 0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(dist_logits, model.head_dist(features[:, 1]), atol=1e-6, rtol=0)
    assert (cls_logits - dist_logits).abs().max() > 1e-3
    torch.testing.assert_close(model(images), (cls_logits + dist_logits) / 2, atol=1e-6, rtol=0)
    pre = model.forward_head(features, pre_logits=True)
    torch.testing.assert_close(pre, (features[:, 0] + features[:, 1]) / 2, atol=1e-6, rtol=0)


def test_reset_classifier_replaces_both_heads(images):
    model = build_model(tiny_cfg(distilled=True))
    model.reset_classifier(9)
    assert model.head.out_features == 9 and model.head_dist.out_features == 9
    assert model(images).shape == (2, 9)
    model.reset_classifier(0)
    assert isinstance(model.head_dist, nn.Identity)
    assert model(images).shape == (2, 32)


def test_distilled_class_needs_a_distilled_config():
    with pytest.raises(ConfigError, match="distilled=True"):
        DistilledVisionTransformer(ViTConfig())
