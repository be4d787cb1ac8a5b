"""``features_only`` backbones and ``FeatureInfo``, against timm on identical weights.

The ``features_*.safetensors`` fixtures were written by timm 1.0.31 itself
(fixtures/make_timm_api_fixtures.py): a timm ``features_only`` model's weights, under the
wrapper's own key names, an input and the maps timm returns for it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

import vitzoo
from vitzoo.models import FeatureGetterNet, FeatureHookNet, FeatureInfo

DATA = Path(__file__).parent / "data" / "timm_api"
CASES = ["vit_default", "vit_indices", "vit_last2", "vit_hook", "vit_norm_nlc", "vit_dynamic",
         "deit_distilled", "hybrid"]
TINY = dict(img_size=32, patch_size=8, embed_dim=16, depth=4, num_heads=2, mlp_dim=64)


def _fixture(case: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = DATA / f"features_{case}.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    return load_file(str(path)), meta


def _vitzoo_features(meta: dict[str, str]) -> nn.Module:
    """The same backbone built by vitzoo (timm's mlp_ratio 4 is mlp_dim = 4 * embed_dim)."""
    kwargs = json.loads(meta["kwargs"])
    kwargs["mlp_dim"] = 4 * kwargs["embed_dim"]
    getter = json.loads(meta["getter"])
    if getter:  # timm's create_model cannot pass norm / output_fmt; vitzoo's can
        return vitzoo.create_model(meta["arch"], num_classes=5, features_only=True, **kwargs,
                                   **getter)
    return vitzoo.create_model(meta["arch"], features_only=True, **kwargs,
                               **json.loads(meta["features"]))


@pytest.mark.parametrize("case", CASES)
def test_features_only_maps_and_feature_info_equal_timms(case):
    tensors, meta = _fixture(case)
    features = _vitzoo_features(meta).eval()
    assert type(features).__name__ == meta["class"]
    state = {k.removeprefix("state."): v for k, v in tensors.items() if k.startswith("state.")}
    # strict: the same blocks, norm and head were pruned away as in timm
    features.load_state_dict(state, strict=True)
    with torch.no_grad():
        outputs = features(tensors["input"])
    expected = [tensors[f"out.{i}"] for i in range(sum(k.startswith("out.") for k in tensors))]
    assert len(outputs) == len(expected)
    # The hybrid's stem keeps Google's numerics (weight standardisation (w - mean) / (std +
    # 1e-5), GroupNorm eps 1e-6) where timm uses sqrt(var + 1e-8) and eps 1e-5: 2.6e-5 on maps
    # of size ~17 (with timm's two epsilons swapped in the difference is 0). Every other case
    # is the same arithmetic, and equal to the last bit.
    atol, rtol = (3e-5, 0.0) if case == "hybrid" else (1e-6, 0.0)
    for ours, theirs in zip(outputs, expected, strict=True):
        torch.testing.assert_close(ours, theirs, atol=atol, rtol=rtol)
    info = json.loads(meta["feature_info"])
    assert features.feature_info.info == info["info"]
    assert list(features.feature_info.out_indices) == info["out_indices"]
    assert len(features.feature_info) == info["len"]
    if case != "vit_hook":  # the hook class returns (B, P + N, D) tokens as they are
        channel_dim = -1 if "NLC" in meta["getter"] else 1
        assert [o.shape[channel_dim] for o in expected] == features.feature_info.channels()


def test_features_only_pretrained_cfg_is_timms_without_the_head():
    reference = json.loads((DATA / "pretrained_cfgs.json").read_text())["features_deit"]
    with torch.device("meta"):
        features = vitzoo.create_model("deit_tiny_distilled_patch16_224", features_only=True)
    cfg = features.pretrained_cfg
    assert "num_classes" not in cfg and "classifier" not in cfg
    assert features.default_cfg is cfg
    for key, value in reference.items():
        ours = tuple(cfg[key]) if isinstance(cfg[key], list) else cfg[key]
        theirs = tuple(value) if isinstance(value, list) else value
        assert ours == theirs, key


def test_getter_values_are_forward_intermediates_of_the_unpruned_model():
    torch.manual_seed(0)
    model = vitzoo.create_model("vit_tiny_patch16_224", **TINY, dynamic_img_size=True).eval()
    x = torch.randn(2, 3, 40, 24)
    with torch.no_grad():
        full = model.forward_intermediates(x, indices=[0, 2], norm=True, output_fmt="NLC",
                                           intermediates_only=True)
        getter = FeatureGetterNet(model, out_indices=[0, 2], norm=True, output_fmt="NLC")
        maps = getter(x)
    assert [m.shape for m in maps] == [(2, 15, 16)] * 2
    for ours, theirs in zip(maps, full, strict=True):
        torch.testing.assert_close(ours, theirs, atol=0, rtol=0)


def test_the_default_backbone_is_the_last_three_blocks_pruned():
    model = vitzoo.create_model("vit_tiny_patch16_224", features_only=True, **TINY)
    assert model.feature_info.out_indices == (1, 2, 3)
    assert model.feature_info.module_name() == ["blocks.1", "blocks.2", "blocks.3"]
    assert model.feature_info.reduction() == [8, 8, 8]
    assert model.feature_info.channels() == [16, 16, 16]
    inner = model.model
    assert len(inner.blocks) == 4
    assert isinstance(inner.norm, nn.Identity) and isinstance(inner.head, nn.Identity)
    pruned = vitzoo.create_model("vit_tiny_patch16_224", features_only=True, out_indices=(0,),
                                 **TINY)
    assert len(pruned.model.blocks) == 1 and len(pruned.feature_info) == 4
    kept_norm = vitzoo.create_model("vit_tiny_patch16_224", features_only=True, norm=True,
                                    **TINY)
    assert isinstance(kept_norm.model.norm, nn.LayerNorm)
    # every parameter the backbone keeps is used by its forward (DDP needs no unused ones)
    sum(m.sum() for m in model(torch.randn(1, 3, 32, 32))).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_out_indices_give_maps_in_block_order():
    torch.manual_seed(0)
    model = vitzoo.create_model("vit_tiny_patch16_224", **TINY).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        reference = model.forward_intermediates(x, intermediates_only=True)  # every block
    for out_indices, blocks in (((3, 1), [1, 3]), ((-1, 0), [0, 3]), (2, [2, 3]), ([1], [1])):
        features = FeatureGetterNet(copy.deepcopy(model), out_indices=out_indices)
        with torch.no_grad():
            maps = features(x)
        assert list(features.feature_info.out_indices) == blocks
        for got, block in zip(maps, blocks, strict=True):
            torch.testing.assert_close(got, reference[block], atol=0, rtol=0)


def test_hook_features_are_raw_block_outputs_in_the_given_order():
    torch.manual_seed(0)
    model = vitzoo.create_model("deit_tiny_distilled_patch16_224", **TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        patches = model.forward_intermediates(x, output_fmt="NLC", return_prefix_tokens=True,
                                              intermediates_only=True)
    raw = [torch.cat([prefix, tokens], dim=1) for tokens, prefix in patches]
    hook = FeatureHookNet(model, out_indices=(3, 0), return_dict=True)
    with torch.no_grad():
        out = hook(x)
    assert list(out) == ["blocks.3", "blocks.0"]
    torch.testing.assert_close(out["blocks.3"], raw[3], atol=0, rtol=0)
    torch.testing.assert_close(out["blocks.0"], raw[0], atol=0, rtol=0)
    assert isinstance(hook.body.head, nn.Identity) and len(hook.body.blocks) == 4


def test_grad_checkpointing_keeps_the_features_and_their_gradients():
    grads = []
    x = torch.randn(2, 3, 32, 32)
    for enable in (False, True):
        torch.manual_seed(0)
        model = vitzoo.create_model("vit_tiny_patch16_224", features_only=True, **TINY).train()
        model.set_grad_checkpointing(enable)
        sum(f.pow(2).mean() for f in model(x)).backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_bad_feature_arguments_fail_with_vitzoo_errors():
    with pytest.raises(vitzoo.FeatureIndexError, match=r"out_indices=\[0, 4\].*4 blocks"):
        vitzoo.create_model("vit_tiny_patch16_224", features_only=True, out_indices=(0, 4),
                            **TINY)
    with pytest.raises(IndexError):  # a second base, for code written against other libraries
        vitzoo.create_model("vit_tiny_patch16_224", features_only=True, out_indices=5, **TINY)
    with pytest.raises(vitzoo.FeatureIndexError, match="1..4"):
        vitzoo.create_model("vit_tiny_patch16_224", features_only=True, out_indices=0, **TINY)
    with pytest.raises(vitzoo.ConfigError, match="unknown feature_cls='pyramid'"):
        vitzoo.create_model("vit_tiny_patch16_224", features_only=True, feature_cls="pyramid",
                            **TINY)
    for name in ("list", "dict", "fx"):
        with pytest.raises(vitzoo.UnsupportedOptionError, match="getter"):
            vitzoo.create_model("vit_tiny_patch16_224", features_only=True, feature_cls=name,
                                **TINY)
    with pytest.raises(vitzoo.ConfigError, match="features_only=True"):
        vitzoo.create_model("vit_tiny_patch16_224", out_indices=(0,), **TINY)
    with pytest.raises(vitzoo.ConfigError, match="getter"):
        vitzoo.create_model("vit_tiny_patch16_224", features_only=True, feature_cls="hook",
                            norm=True, **TINY)
    with pytest.raises(vitzoo.ConfigError, match="output_fmt"):
        vitzoo.create_model("vit_tiny_patch16_224", features_only=True, output_fmt="NHWC",
                            **TINY)


def test_a_feature_class_can_be_passed_as_a_class():
    features = vitzoo.create_model("vit_tiny_patch16_224", features_only=True,
                                   feature_cls=FeatureGetterNet, out_indices=[-1], **TINY)
    assert isinstance(features, FeatureGetterNet) and features.feature_info.out_indices == (3,)


# -- FeatureInfo --------------------------------------------------------------------------------
def _info() -> FeatureInfo:
    entries = [{"module": f"stage{i}", "num_chs": 8 * 2 ** i, "reduction": 4 * 2 ** i}
               for i in range(4)]
    return FeatureInfo(entries, out_indices=(1, 3))


def test_feature_info_accessors_follow_timms_indexing():
    info = _info()
    assert info.channels() == [16, 64] and info.reduction() == [8, 32]
    assert info.module_name() == ["stage1", "stage3"]
    assert info.channels(0) == 8 and info.reduction([0, 2]) == [4, 16]
    assert info.get_dicts(keys=["num_chs"]) == [{"num_chs": 16}, {"num_chs": 64}]
    assert info.get_dicts(idx=2) == {"module": "stage2", "num_chs": 32, "reduction": 16,
                                     "index": 2}
    assert info.get_dicts(keys=["module"], idx=[0]) == [{"module": "stage0"}]
    assert info[3]["index"] == 3 and len(info) == 4
    last_two = info.from_other(2)
    assert last_two.out_indices == (-2, -1) and last_two.channels() == [32, 64]
    last_two.info[0]["num_chs"] = 1
    assert info.info[0]["num_chs"] == 8  # a copy


def test_feature_info_rejects_inconsistent_entries():
    with pytest.raises(vitzoo.ConfigError, match="lacks reduction"):
        FeatureInfo([{"module": "a", "num_chs": 4}], 1)
    with pytest.raises(vitzoo.ConfigError, match="must not decrease"):
        FeatureInfo([{"module": "a", "num_chs": 4, "reduction": 8},
                     {"module": "b", "num_chs": 4, "reduction": 4}], 1)
    with pytest.raises(vitzoo.ConfigError, match="positive"):
        FeatureInfo([{"module": "a", "num_chs": 0, "reduction": 4}], 1)


def test_feature_info_over_a_models_blocks_is_timms_description():
    model = vitzoo.create_model("vit_base_patch16_224", depth=2)
    info = FeatureInfo(model.feature_info, len(model.feature_info))
    assert info.get_dicts() == [{"module": "blocks.0", "num_chs": 768, "reduction": 16,
                                 "index": 0},
                                {"module": "blocks.1", "num_chs": 768, "reduction": 16,
                                 "index": 1}]
