"""ViTConfig: validation, overrides and serialisation."""

from __future__ import annotations

import pytest

import vitzoo
from vitzoo import ConfigError, UnknownOverrideError, ViTConfig


def test_misspelt_override_names_the_field_and_lists_valid_ones():
    with pytest.raises(UnknownOverrideError) as err:
        vitzoo.SIZES["B"].replace(drop_pat_rate=0.1)
    message = str(err.value)
    assert "'drop_pat_rate'" in message
    assert "Did you mean 'drop_path_rate'" in message  # best match first
    assert "Valid fields:" in message and "num_classes" in message
    assert isinstance(err.value, TypeError) and isinstance(err.value, vitzoo.VitzooError)


def test_sizes_follow_the_paper_table():
    table = {k: (c.embed_dim, c.depth, c.num_heads, c.mlp_hidden_dim)
             for k, c in vitzoo.SIZES.items()}
    assert table == {
        "Ti": (192, 12, 3, 768), "S": (384, 12, 6, 1536), "B": (768, 12, 12, 3072),
        "L": (1024, 24, 16, 4096), "H": (1280, 32, 16, 5120),
    }


def test_int_sizes_become_pairs_and_grid_is_derived():
    cfg = ViTConfig(img_size=(224, 320), patch_size=16)
    assert cfg.patch_size == (16, 16)
    assert cfg.grid_size == (14, 20) and cfg.num_patches == 280
    assert ViTConfig(img_size=225, patch_size=16).grid_size == (14, 14)


def test_dict_round_trip_is_lossless():
    cfg = ViTConfig(img_size=(96, 128), representation_size=48, gelu_approximate="tanh",
                    global_pool="avg", class_token=False, fc_norm=True, init_values=0.1)
    data = cfg.to_dict()
    assert data["img_size"] == [96, 128]
    assert ViTConfig.from_dict(data) == cfg
    with pytest.raises(UnknownOverrideError):
        ViTConfig.from_dict({**data, "depht": 3})


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(embed_dim=100, num_heads=3), "not divisible by num_heads"),
    (dict(global_pool="token", class_token=False), "needs class_token=True"),
    (dict(global_pool="max"), "global_pool='max' is not one of"),
    (dict(gelu_approximate="sigmoid"), "gelu_approximate"),
    (dict(pos_embed="sincos", embed_dim=6, num_heads=1), "divisible by 4"),
    (dict(drop_path_rate=1.0), "drop_path_rate must be in [0, 1)"),
    (dict(num_classes=-1), "num_classes must be an int >= 0"),
    (dict(img_size=8, patch_size=16), "smaller than patch_size"),
    (dict(img_size=(1, 2, 3)), "img_size must be an int or a (height, width) pair"),
    (dict(distilled=True, global_pool="avg"), "distilled=True needs"),
    (dict(distilled=True, representation_size=10), "does not support"),
    (dict(attn_impl="flash"), "attn_impl"),
    (dict(norm_eps=0.0), "norm_eps must be positive"),
])
def test_invalid_values_raise_config_errors(kwargs, fragment):
    with pytest.raises(ConfigError, match=None) as err:
        ViTConfig(**kwargs)
    assert fragment in str(err.value)
    assert isinstance(err.value, ValueError)


def test_config_is_frozen():
    cfg = ViTConfig()
    with pytest.raises(AttributeError):
        cfg.depth = 3  # type: ignore[misc]
