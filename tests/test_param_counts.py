"""Every registered architecture has exactly the parameter count of models.md (1000 classes)."""

from __future__ import annotations

import pytest
import torch

import vitzoo

# ../shared/reference/models.md, "params (1000 classes)" (timm 1.0.31 / Google's own tests).
PARAMS = {
    "vit_tiny_patch16_224": 5_717_416,
    "vit_tiny_patch16_384": 5_790_376,
    "vit_small_patch32_224": 22_878_952,
    "vit_small_patch32_384": 22_915_432,
    "vit_small_patch16_224": 22_050_664,
    "vit_small_patch16_384": 22_196_584,
    "vit_small_patch8_224": 22_055_272,
    "vit_base_patch32_224": 88_224_232,
    "vit_base_patch32_384": 88_297_192,
    "vit_base_patch16_224": 86_567_656,
    "vit_base_patch16_384": 86_859_496,
    "vit_base_patch8_224": 86_576_872,
    "vit_large_patch32_224": 306_535_400,
    "vit_large_patch32_384": 306_632_680,
    "vit_large_patch16_224": 304_326_632,
    "vit_large_patch16_384": 304_715_752,
    "vit_large_patch14_224": 304_203_752,
    "vit_huge_patch14_224": 632_045_800,
    "deit_tiny_patch16_224": 5_717_416,
    "deit_small_patch16_224": 22_050_664,
    "deit_base_patch16_224": 86_567_656,
    "deit_base_patch16_384": 86_859_496,
    "deit_tiny_distilled_patch16_224": 5_910_800,
    "deit_small_distilled_patch16_224": 22_436_432,
    "deit_base_distilled_patch16_224": 87_338_192,
    "deit_base_distilled_patch16_384": 87_630_032,
    "vit_tiny_r_s16_p8_224": 6_337_704,
    "vit_tiny_r_s16_p8_384": 6_355_944,
    "vit_small_r26_s32_224": 36_431_912,
    "vit_small_r26_s32_384": 36_468_392,
    "vit_base_r50_s16_224": 98_659_112,
    "vit_base_r50_s16_384": 98_950_952,
}


def test_the_table_covers_every_registered_architecture():
    assert sorted(PARAMS) == sorted(vitzoo.list_models())


@pytest.mark.parametrize("arch", sorted(PARAMS))
def test_parameter_count_equals_models_md(arch):
    with torch.device("meta"):
        model = vitzoo.create_model(arch, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[arch]
    assert vitzoo.model_info(arch).num_params == PARAMS[arch]
