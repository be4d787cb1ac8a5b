"""timm's state-dict layout loads strictly and reproduces timm's outputs.

The key lists in data/timm_keys/ and the tiny models in data/timm_tiny_*.safetensors were
written by timm 1.0.31 itself (fixtures/make_timm_fixtures.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import vitzoo

DATA = Path(__file__).parent / "data"


KEY_ARCHS = ["vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224", "vit_base_patch32_384",
             "vit_tiny_r_s16_p8_224", "vit_small_r26_s32_224", "vit_base_r50_s16_224"]


@pytest.mark.parametrize("arch", KEY_ARCHS)
def test_state_dict_keys_and_shapes_equal_timms_list(arch):
    expected = [(k, tuple(shape)) for k, shape in
                json.loads((DATA / "timm_keys" / f"{arch}.json").read_text())]
    with torch.device("meta"):
        model = vitzoo.create_model(arch, num_classes=1000)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == expected


@pytest.mark.parametrize("arch", KEY_ARCHS)
def test_a_timm_layout_state_dict_loads_strictly(arch):
    rows = json.loads((DATA / "timm_keys" / f"{arch}.json").read_text())
    with torch.device("meta"):
        model = vitzoo.create_model(arch, num_classes=1000)
        state = {k: torch.empty(shape) for k, shape in rows}
    result = model.load_state_dict(state, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def _config_for(timm_kwargs: dict) -> vitzoo.ViTConfig:
    """vitzoo's config for timm's VisionTransformer arguments (timm uses exact GELU)."""
    return vitzoo.ViTConfig(
        img_size=timm_kwargs["img_size"], patch_size=timm_kwargs["patch_size"],
        embed_dim=timm_kwargs["embed_dim"], depth=timm_kwargs["depth"],
        num_heads=timm_kwargs["num_heads"],
        mlp_dim=int(timm_kwargs["embed_dim"] * timm_kwargs["mlp_ratio"]),
        num_classes=timm_kwargs["num_classes"],
        global_pool=timm_kwargs.get("global_pool", "token"),
        fc_norm=bool(timm_kwargs.get("fc_norm", False)),
        class_token=timm_kwargs.get("class_token", True),
        init_values=timm_kwargs.get("init_values"),
        qkv_bias=timm_kwargs.get("qkv_bias", True),
        distilled=timm_kwargs["distilled"],
        gelu_approximate="none",
        norm_eps=1e-6,
    )


CASES = ["token", "avg_fc_norm", "avg_no_class_token", "layer_scale", "distilled", "map"]


@pytest.fixture(params=CASES)
def timm_case(request):
    path = DATA / f"timm_tiny_{request.param}.safetensors"
    with safe_open(str(path), "pt") as f:
        kwargs = json.loads(f.metadata()["timm_kwargs"])
    tensors = load_file(str(path))
    state = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
    model = vitzoo.build_model(_config_for(kwargs)).eval()
    model.load_state_dict(state, strict=True)
    return model, tensors


def test_timm_weights_reproduce_timms_logits(timm_case):
    model, ref = timm_case
    with torch.no_grad():
        torch.testing.assert_close(model(ref["input"]), ref["logits"], atol=1e-6, rtol=0)


def test_timm_weights_reproduce_features_and_pre_logits(timm_case):
    model, ref = timm_case
    with torch.no_grad():
        features = model.forward_features(ref["input"])
        torch.testing.assert_close(features, ref["features"], atol=1e-6, rtol=0)
        torch.testing.assert_close(model.forward_head(features, pre_logits=True),
                                   ref["pre_logits"], atol=1e-6, rtol=0)


def test_forward_intermediates_match_timms(timm_case):
    model, ref = timm_case
    with torch.no_grad():
        inter = model.forward_intermediates(ref["input"], indices=2, norm=True,
                                            output_fmt="NCHW", intermediates_only=True)
    assert len(inter) == 2
    for i, got in enumerate(inter):
        torch.testing.assert_close(got, ref[f"intermediates.{i}"], atol=1e-6, rtol=0)
