"""model_info: parameters and GFLOPs without allocating weights."""

from __future__ import annotations

import pytest
import torch

import vitzoo


def _vit_macs(d: int, depth: int, mlp: int, patch: int, img: int, classes: int,
              prefix: int = 1) -> int:
    """Multiply-adds of a ViT written out layer by layer."""
    n_patches = (img // patch) ** 2
    n = n_patches + prefix
    embed = n_patches * d * 3 * patch * patch
    block = n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * mlp
    return embed + depth * block + d * classes


@pytest.mark.parametrize("arch, dims", [
    ("vit_base_patch16_224", (768, 12, 3072, 16, 224, 1000)),
    ("vit_tiny_patch16_384", (192, 12, 768, 16, 384, 1000)),
    ("vit_large_patch32_224", (1024, 24, 4096, 32, 224, 1000)),
])
def test_gflops_count_every_matmul_and_the_attention(arch, dims):
    info = vitzoo.model_info(arch)
    assert info.gflops == pytest.approx(_vit_macs(*dims) / 1e9, rel=1e-9)


def test_deit_distilled_counts_the_second_token_and_head():
    info = vitzoo.model_info("deit_ti16_distilled")
    expected = _vit_macs(192, 12, 768, 16, 224, 1000, prefix=2) + 192 * 1000
    assert info.gflops == pytest.approx(expected / 1e9, rel=1e-9)
    assert info.model_class == "DistilledVisionTransformer"


def test_info_names_tags_and_aliases():
    info = vitzoo.model_info("ViT-B_16")
    assert info.name == "vit_base_patch16_224"
    assert info.num_params == 86_567_656
    assert round(info.gflops, 2) == 17.56
    assert info.default_tag == "augreg2_in21k_ft_in1k"
    assert info.aliases == ["ViT-B_16", "vit_b16"]
    data = info.to_dict()
    assert data["config"]["embed_dim"] == 768 and data["tags"][0] == info.default_tag


@pytest.mark.parametrize("name", ["vit_base_patch16_siglip_224", "vit_so400m_patch14_siglip_224",
                                  "vit_base_patch16_224"])
def test_flops_of_map_head_models_are_counted_and_agree_with_the_benchmark_count(name):
    from vitzoo.benchmark.flops import model_flops
    from vitzoo.info import count_flops

    with torch.device("meta"):
        model = vitzoo.create_model(name)
    # was: AssertionError from torch's module tracker (the MAP head's probe is a parameter
    # passed to a submodule under no_grad), so `vitzoo info` failed on SigLIP models
    macs = count_flops(model, (3, *model.cfg.img_size))
    assert 2 * macs == model_flops(model.cfg, 1)  # two independent counts, exactly equal
    assert all(p.requires_grad for p in model.parameters())  # restored
