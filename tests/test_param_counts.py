"""Every registered architecture has exactly timm's parameter count: the classic ones those of
models.md (1000 classes), the modern families those of families.md (with the default tag's
class count, and without a head)."""

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


# ../shared/reference/families.md: (params with the default tag's head, its classes, params
# without a head), measured with timm 1.0.31 on the meta device; the *_gap_* SigLIP towers and
# TinyCLIP are measured the same way (families.md gives their counts in the text or not at all).
FAMILY_PARAMS = {
    "vit_base_patch14_dinov2": (86_579_712, 0, 86_579_712),
    "vit_base_patch14_reg4_dinov2": (86_582_016, 0, 86_582_016),
    "vit_giant_patch14_dinov2": (1_136_479_232, 0, 1_136_479_232),
    "vit_giant_patch14_reg4_dinov2": (1_136_483_840, 0, 1_136_483_840),
    "vit_large_patch14_dinov2": (304_367_616, 0, 304_367_616),
    "vit_large_patch14_reg4_dinov2": (304_370_688, 0, 304_370_688),
    "vit_small_patch14_dinov2": (22_056_192, 0, 22_056_192),
    "vit_small_patch14_reg4_dinov2": (22_057_344, 0, 22_057_344),
    "deit3_base_patch16_224": (86_585_320, 1000, 85_816_320),
    "deit3_base_patch16_384": (86_877_160, 1000, 86_108_160),
    "deit3_huge_patch14_224": (632_126_440, 1000, 630_845_440),
    "deit3_large_patch16_224": (304_374_760, 1000, 303_349_760),
    "deit3_large_patch16_384": (304_763_880, 1000, 303_738_880),
    "deit3_medium_patch16_224": (38_849_512, 1000, 38_336_512),
    "deit3_small_patch16_224": (22_059_496, 1000, 21_674_496),
    "deit3_small_patch16_384": (22_205_416, 1000, 21_820_416),
    "vit_base_patch16_clip_224": (86_568_424, 1000, 85_799_424),
    "vit_base_patch16_clip_384": (86_860_264, 1000, 86_091_264),
    "vit_base_patch16_clip_quickgelu_224": (86_193_152, 512, 85_799_424),
    "vit_base_patch16_plus_clip_240": (117_214_464, 640, 116_640_384),
    "vit_base_patch32_clip_224": (88_225_000, 1000, 87_456_000),
    "vit_base_patch32_clip_256": (87_861_248, 512, 87_467_520),
    "vit_base_patch32_clip_384": (88_297_960, 1000, 87_528_960),
    "vit_base_patch32_clip_448": (88_337_896, 1000, 87_568_896),
    "vit_base_patch32_clip_quickgelu_224": (87_849_728, 512, 87_456_000),
    "vit_betwixt_patch32_clip_224": (61_411_712, 512, 61_083_520),
    "vit_giant_patch14_clip_224": (1_012_646_656, 1024, 1_011_203_840),
    "vit_gigantic_patch14_clip_224": (1_844_908_544, 1280, 1_842_777_344),
    "vit_gigantic_patch14_clip_378": (1_845_695_616, 1280, 1_843_564_416),
    "vit_gigantic_patch14_clip_quickgelu_224": (1_844_908_544, 1280, 1_842_777_344),
    "vit_huge_patch14_clip_224": (632_047_080, 1000, 630_766_080),
    "vit_huge_patch14_clip_336": (632_456_680, 1000, 631_175_680),
    "vit_huge_patch14_clip_378": (632_683_264, 1024, 631_371_520),
    "vit_huge_patch14_clip_quickgelu_224": (632_077_824, 1024, 630_766_080),
    "vit_huge_patch14_clip_quickgelu_378": (632_683_264, 1024, 631_371_520),
    "vit_large_patch14_clip_224": (304_204_776, 1000, 303_179_776),
    "vit_large_patch14_clip_336": (304_532_456, 1000, 303_507_456),
    "vit_large_patch14_clip_quickgelu_224": (303_966_976, 768, 303_179_776),
    "vit_large_patch14_clip_quickgelu_336": (304_294_656, 768, 303_507_456),
    "vit_medium_patch16_clip_224": (38_587_904, 512, 38_325_248),
    "vit_medium_patch32_clip_224": (39_692_288, 512, 39_429_632),
    "vit_xsmall_patch16_clip_224": (8_277_504, 512, 8_145_920),
    "vit_base_patch16_siglip_224": (92_884_224, 0, 92_884_224),
    "vit_base_patch16_siglip_256": (92_930_304, 0, 92_930_304),
    "vit_base_patch16_siglip_384": (93_176_064, 0, 93_176_064),
    "vit_base_patch16_siglip_512": (93_520_128, 0, 93_520_128),
    "vit_base_patch16_siglip_gap_224": (85_797_120, 0, 85_797_120),
    "vit_base_patch16_siglip_gap_256": (85_843_200, 0, 85_843_200),
    "vit_base_patch16_siglip_gap_384": (86_088_960, 0, 86_088_960),
    "vit_base_patch16_siglip_gap_512": (86_433_024, 0, 86_433_024),
    "vit_base_patch32_siglip_256": (94_552_320, 0, 94_552_320),
    "vit_base_patch32_siglip_gap_256": (87_465_216, 0, 87_465_216),
    "vit_giantopt_patch16_siglip_256": (1_163_168_256, 0, 1_163_168_256),
    "vit_giantopt_patch16_siglip_384": (1_163_659_776, 0, 1_163_659_776),
    "vit_giantopt_patch16_siglip_gap_256": (1_134_838_272, 0, 1_134_838_272),
    "vit_giantopt_patch16_siglip_gap_384": (1_135_329_792, 0, 1_135_329_792),
    "vit_large_patch16_siglip_256": (315_956_224, 0, 315_956_224),
    "vit_large_patch16_siglip_384": (316_283_904, 0, 316_283_904),
    "vit_large_patch16_siglip_512": (316_742_656, 0, 316_742_656),
    "vit_large_patch16_siglip_gap_256": (303_361_024, 0, 303_361_024),
    "vit_large_patch16_siglip_gap_384": (303_688_704, 0, 303_688_704),
    "vit_large_patch16_siglip_gap_512": (304_147_456, 0, 304_147_456),
    "vit_so400m_patch14_siglip_224": (427_680_704, 0, 427_680_704),
    "vit_so400m_patch14_siglip_378": (428_225_600, 0, 428_225_600),
    "vit_so400m_patch14_siglip_384": (428_225_600, 0, 428_225_600),
    "vit_so400m_patch14_siglip_gap_224": (412_442_352, 0, 412_442_352),
    "vit_so400m_patch14_siglip_gap_378": (412_987_248, 0, 412_987_248),
    "vit_so400m_patch14_siglip_gap_384": (412_987_248, 0, 412_987_248),
    "vit_so400m_patch14_siglip_gap_448": (413_327_088, 0, 413_327_088),
    "vit_so400m_patch14_siglip_gap_896": (416_866_032, 0, 416_866_032),
    "vit_so400m_patch16_siglip_256": (427_888_064, 0, 427_888_064),
    "vit_so400m_patch16_siglip_384": (428_256_704, 0, 428_256_704),
    "vit_so400m_patch16_siglip_512": (428_772_800, 0, 428_772_800),
    "vit_so400m_patch16_siglip_gap_256": (412_649_712, 0, 412_649_712),
    "vit_so400m_patch16_siglip_gap_384": (413_018_352, 0, 413_018_352),
    "vit_so400m_patch16_siglip_gap_512": (413_534_448, 0, 413_534_448),
}


def test_the_tables_cover_every_registered_architecture():
    assert sorted([*PARAMS, *FAMILY_PARAMS]) == sorted(vitzoo.list_models())


@pytest.mark.parametrize("arch", sorted(FAMILY_PARAMS))
def test_family_parameter_counts_equal_timms(arch):
    params, classes, headless = FAMILY_PARAMS[arch]
    with torch.device("meta"):
        default = vitzoo.create_model(arch)
        bare = vitzoo.create_model(arch, num_classes=0)
    assert default.num_classes == classes  # the default tag's head
    assert sum(p.numel() for p in default.parameters()) == params
    assert sum(p.numel() for p in bare.parameters()) == headless


@pytest.mark.parametrize("arch", sorted(PARAMS))
def test_parameter_count_equals_models_md(arch):
    with torch.device("meta"):
        model = vitzoo.create_model(arch, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[arch]
    assert vitzoo.model_info(arch).num_params == PARAMS[arch]
