"""Attention rollout (Abnar & Zuidema 2020), class-token maps and the heat-map picture."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

import vitzoo
from vitzoo.errors import ConfigError, MissingDependencyError
from vitzoo.explain import attention_rollout, class_token_map, fuse_heads, save_heatmap

from conftest import random_weights, record_figures, tiny_cfg

needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason='needs pip install "vitzoo[plot]"')


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


A1 = t([[0.5, 0.5], [0.25, 0.75]])
A2 = t([[0.0, 1.0], [1.0, 0.0]])


def test_one_block_rollout_is_the_attention_with_the_residual_added_and_rows_renormalised():
    # (A + I) / 2 row by row: [[1.5, .5], [.25, 1.75]] / 2
    out = attention_rollout([A1[None]])
    torch.testing.assert_close(out[0], t([[0.75, 0.25], [0.125, 0.875]]), rtol=0, atol=1e-15)


def test_rollout_multiplies_later_blocks_on_the_left():
    # Â2 Â1 = [[.5, .5], [.5, .5]] @ [[.75, .25], [.125, .875]]; Â1 Â2 would be all 0.5
    out = attention_rollout([A1[None], A2[None]])
    torch.testing.assert_close(out[0], t([[0.4375, 0.5625], [0.4375, 0.5625]]), rtol=0,
                               atol=1e-15)


def test_without_the_residual_rollout_is_the_plain_product_of_the_attention():
    out = attention_rollout([A1[None], A2[None]], residual=False)
    torch.testing.assert_close(out[0], A2 @ A1, rtol=0, atol=1e-15)


def test_heads_are_averaged_before_the_residual_by_default():
    heads = torch.stack([torch.eye(2, dtype=torch.float64), A2])[None]  # (1, 2, 2, 2)
    # mean = all 0.5; + I = [[1.5, .5], [.5, 1.5]], rows / 2
    torch.testing.assert_close(attention_rollout([heads])[0], t([[0.75, 0.25], [0.25, 0.75]]),
                               rtol=0, atol=1e-15)
    # max = all 1; + I = [[2, 1], [1, 2]], rows / 3
    torch.testing.assert_close(attention_rollout([heads], head_fusion="max")[0],
                               t([[2, 1], [1, 2]]) / 3, rtol=0, atol=1e-15)
    # min = all 0: only the residual is left
    torch.testing.assert_close(attention_rollout([heads], head_fusion="min")[0],
                               torch.eye(2, dtype=torch.float64), rtol=0, atol=1e-15)


def test_fuse_heads_takes_a_fused_map_as_it_is_and_rejects_other_shapes():
    fused = A1[None]
    assert fuse_heads(fused) is fused
    with pytest.raises(ConfigError, match="head_fusion='sum'"):
        fuse_heads(fused, "sum")
    with pytest.raises(ConfigError, match=r"\(B, H, N, N\)"):
        fuse_heads(torch.ones(1, 2, 3, 4))


def test_rollout_keeps_the_batch_apart_and_the_dtype():
    maps = [torch.stack([A1, A2]).float()]  # (2, N, N): two images
    out = attention_rollout(maps)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[1], ((A2 + torch.eye(2)) / 2).float(), rtol=0, atol=1e-7)


def test_rollout_rejects_no_maps_and_maps_of_different_sizes():
    with pytest.raises(ConfigError, match="at least one block"):
        attention_rollout([])
    with pytest.raises(ConfigError, match="different shapes"):
        attention_rollout([A1[None], torch.eye(3)[None]])


def test_class_token_map_is_the_class_row_over_the_patches_on_the_grid():
    # 1 class token + a 1x2 grid
    attn = t([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]])[None]
    torch.testing.assert_close(class_token_map(attn, (1, 2)), t([[[0.3, 0.5]]]), rtol=0, atol=0)
    # DeiT: class and distillation token, then a 2x1 grid; the distillation token's row
    deit = t([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.25] * 4, [0.25] * 4])[None]
    torch.testing.assert_close(class_token_map(deit, (2, 1), num_prefix_tokens=2, token=1),
                               t([[[0.2], [0.1]]]), rtol=0, atol=0)


def test_class_token_map_checks_the_token_count_and_that_there_is_a_class_token():
    attn = torch.eye(5)[None]
    with pytest.raises(ConfigError, match="5 tokens are not 1 prefix tokens \\+ a 2x3"):
        class_token_map(attn, (2, 3))
    with pytest.raises(ConfigError, match="no class-token map"):
        class_token_map(attn, (1, 5), num_prefix_tokens=0)
    with pytest.raises(ConfigError, match="fuse the heads first"):
        class_token_map(torch.eye(5)[None, None], (2, 2))


def test_rollout_of_a_model_is_a_distribution_over_its_tokens():
    model = random_weights(vitzoo.build_model(tiny_cfg())).eval()
    with torch.no_grad():
        maps = model.attention_maps(torch.randn(2, 3, 32, 32))
    rollout = attention_rollout(maps)  # (2, 17, 17)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 17), rtol=0, atol=1e-6)
    heat = class_token_map(rollout, model.patch_embed.grid_size)
    assert heat.shape == (2, 4, 4)
    torch.testing.assert_close(heat.flatten(1), rollout[:, 0, 1:], rtol=0, atol=0)


@needs_matplotlib
def test_save_heatmap_writes_the_picture(tmp_path):
    from PIL import Image

    out = save_heatmap(torch.rand(3, 16, 16), torch.rand(4, 4), tmp_path / "map.png",
                       title="a title")
    assert out == tmp_path / "map.png"
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.size == (1440, 510)  # 9.6 x 3.4 in, 150 dpi
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.png"]  # nothing else left


@needs_matplotlib
def test_the_heat_map_has_titled_pixel_axes_with_ticks_and_a_labelled_colour_bar(tmp_path,
                                                                                  monkeypatch):
    figures = record_figures(monkeypatch)
    save_heatmap(torch.rand(3, 32, 48), torch.rand(2, 3), tmp_path / "map.png")
    (figure,) = figures
    *panels, bar = figure.axes
    assert [a.get_title() for a in panels] == ["input", "attention", "overlay"]
    assert [a.get_xlabel() for a in panels] == ["x (pixels)"] * 3
    assert panels[0].get_ylabel() == "y (pixels)" and bar.get_ylabel() == "attention"
    for axes in panels:
        assert axes.axison
        xticks = [t.get_text() for t in axes.get_xticklabels() if t.get_text()]
        yticks = [t.get_text() for t in axes.get_yticklabels() if t.get_text()]
        assert len(xticks) >= 3 and len(yticks) >= 3, (xticks, yticks)
        assert axes.get_xlim() == (-0.5, 47.5) and axes.get_ylim() == (31.5, -0.5)


@needs_matplotlib
def test_save_heatmap_draws_grey_images_and_refuses_unknown_formats(tmp_path):
    save_heatmap(torch.rand(1, 8, 8), torch.rand(2, 2), tmp_path / "grey.svg")
    assert (tmp_path / "grey.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ConfigError, match=r"cannot write a \.bmpx picture; use one of .*\.png"):
        save_heatmap(torch.rand(3, 8, 8), torch.rand(2, 2), tmp_path / "map.bmpx")
    with pytest.raises(ConfigError, match="C = 1 or 3"):
        save_heatmap(torch.rand(2, 8, 8), torch.rand(2, 2), tmp_path / "map.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grey.svg"]


def test_without_matplotlib_the_error_names_the_plot_extra(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(MissingDependencyError, match=r'pip install "vitzoo\[plot\]"'):
        save_heatmap(torch.rand(3, 8, 8), torch.rand(2, 2), tmp_path / "map.png")
    assert list(tmp_path.iterdir()) == []
