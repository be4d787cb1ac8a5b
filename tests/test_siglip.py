"""SigLIP image towers from big_vision's two-tower ``.npz`` files, checked against big_vision.

The fixtures (tests/fixtures/make_siglip_fixtures.py) are big_vision's own ``two_towers`` models
(``vit._Model`` with ``pool_type="map"``, learned position table, no class token, no head),
saved as big_vision saves checkpoints (``params/img/...``, ``params/txt/...``, ``params/t``,
``params/b``), with big_vision's outputs. Measured max |diff| of vitzoo against big_vision:
MAP output <= 1.2e-6, encoded tokens <= 5.5e-6 (native and resized sizes, both files).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import vitzoo
from vitzoo.adapters import big_vision
from vitzoo.adapters import jax_npz as J
from vitzoo.errors import CheckpointError
from vitzoo.io import read_npz
from vitzoo.reference.jax_numpy import jax_vit_forward

DATA = Path(__file__).parent / "data" / "siglip"
# name: (native size, resized size); the so400m-like file is patch 14 at 44 px, and its 3x3
# table says only "42 to 55 px" (it is read as 48, the multiple of 16), so the size is passed.
FIXTURES = {"b16_looped_bf16": (48, 64), "so400m_scanned": (44, 58)}
ATOL = 1e-5


def _images(pixels: np.ndarray) -> np.ndarray:
    """NHWC uint8 -> [-1, 1] float32, the same arithmetic as the fixture script."""
    return pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def _nchw(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(_images(pixels).transpose(0, 3, 1, 2).copy())


def _outputs(model, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = _nchw(pixels)
    with torch.no_grad():
        return model(x).double().numpy(), model.forward_features(x).double().numpy()


def _ref(name: str):
    return np.load(DATA / f"{name}_ref.npz")


@pytest.mark.parametrize("prefix", ["", "resized_"])
@pytest.mark.parametrize("name", list(FIXTURES))
def test_load_model_reproduces_big_vision(name, prefix):
    ref = _ref(name)
    size = FIXTURES[name][1 if prefix else 0]
    model = vitzoo.load_model(DATA / f"{name}.npz", img_size=size).eval()
    pooled, encoded = _outputs(model, ref[f"{prefix}pixels"])
    np.testing.assert_allclose(pooled, ref[f"{prefix}pre_logits"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(encoded, ref[f"{prefix}encoded"], rtol=0, atol=ATOL)


def test_two_tower_file_builds_the_siglip_image_tower():
    model = vitzoo.load_model(DATA / "so400m_scanned.npz")
    cfg = model.cfg
    assert (cfg.class_token, cfg.global_pool, cfg.num_classes) == (False, "map", 0)
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_dim) == (18, 3, 3, 67)
    assert (cfg.gelu_approximate, cfg.norm_eps, cfg.pos_embed_resample) == ("tanh", 1e-6, "scipy")
    assert cfg.patch_size == (14, 14) and cfg.grid_size == (3, 3)
    assert model.attn_pool.mlp.fc1.out_features == 67  # the MAP head's MLP has the odd width too
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    assert model.pretrained_cfg["std"] == (0.5, 0.5, 0.5)
    assert vitzoo.load_model(DATA / "b16_looped_bf16.npz").cfg.img_size == (48, 48)


def test_bfloat16_file_is_decoded_exactly():
    """The reference of the bf16 file is big_vision on the same (bf16-exact) weights in float32.

    big_vision run on the bf16 file as its loader returns it computes the MAP head's query
    projection in bfloat16 (flax promotes the bf16 probe and kernel): 4.6e-4 away in the pooled
    output, while the float32 encoder agrees (measured 2.4e-6).
    """
    ref = _ref("b16_looped_bf16")
    dtypes = {v.dtype.str for v in read_npz(DATA / "b16_looped_bf16.npz").values()}
    assert dtypes == {"|V2"}
    pooled, encoded = _outputs(vitzoo.load_model(DATA / "b16_looped_bf16.npz"), ref["pixels"])
    np.testing.assert_allclose(encoded, ref["bf16_file_encoded"], rtol=0, atol=ATOL)
    assert 1e-4 < np.abs(pooled - ref["bf16_file_pre_logits"]).max() < 1e-3


def test_text_tower_temperature_and_bias_are_ignored_and_logged(tmp_path, caplog):
    arrays = read_npz(DATA / "so400m_scanned.npz")
    assert any(k.startswith("params/txt/") for k in arrays) and "params/t" in arrays
    assert big_vision.ignored_entries(arrays) == {"params/b": 1, "params/t": 1, "params/txt": 22}
    with caplog.at_level(logging.INFO, logger="vitzoo.adapters.jax_npz"):
        full = vitzoo.load_model(DATA / "so400m_scanned.npz", img_size=44)
    assert "params/txt (22 arrays)" in caplog.text
    image_only = tmp_path / "img_only.npz"
    np.savez(image_only, **{k: v for k, v in arrays.items() if k.startswith("params/img/")})
    alone = vitzoo.load_model(image_only, img_size=44)
    pixels = _ref("so400m_scanned")["pixels"]
    np.testing.assert_array_equal(_outputs(full, pixels)[0], _outputs(alone, pixels)[0])


@pytest.mark.parametrize("name", list(FIXTURES))
def test_numpy_oracle_reproduces_big_vision(name):
    """The float64 oracle behind ``convert --verify`` on the MAP head without a class token."""
    ref = _ref(name)
    params = big_vision.select_params(read_npz(DATA / f"{name}.npz"))
    out = jax_vit_forward(params, _images(ref["pixels"]))
    np.testing.assert_allclose(out["pre_logits"], ref["pre_logits"], rtol=0, atol=2e-6)
    np.testing.assert_allclose(out["encoder_out"], ref["encoded"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", list(FIXTURES))
def test_convert_verify_round_trip_gives_the_same_outputs(name, tmp_path):
    size = FIXTURES[name][0]
    dst = vitzoo.convert_checkpoint(DATA / f"{name}.npz", tmp_path / "tower.safetensors",
                                    verify=True)
    ref = _ref(name)
    pooled, encoded = _outputs(vitzoo.load_model(dst, img_size=size), ref["pixels"])
    np.testing.assert_allclose(pooled, ref["pre_logits"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(encoded, ref["encoded"], rtol=0, atol=ATOL)


def test_convert_cli_verifies_a_two_tower_file(tmp_path, capsys):
    from vitzoo.cli import main

    main(["convert", str(DATA / "so400m_scanned.npz"), str(tmp_path / "t.safetensors"),
          "--verify"])
    assert "verified" in capsys.readouterr().out


def _without(tmp_path: Path, drop) -> Path:
    arrays = read_npz(DATA / "so400m_scanned.npz")
    path = tmp_path / "broken.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if not drop(k)})
    return path


def test_two_tower_file_without_image_tower_raises(tmp_path):
    path = _without(tmp_path, lambda k: k.startswith("params/img/"))
    with pytest.raises(CheckpointError, match="no complete image tower"):
        vitzoo.load_model(path)


@pytest.mark.parametrize("missing", [
    "params/img/embedding/kernel",
    "params/img/Transformer/encoderblock/MultiHeadDotProductAttention_0/key/kernel",
    "params/img/MAPHead_0/MlpBlock_0/Dense_1/kernel",
])
def test_two_tower_file_with_truncated_image_tower_raises(tmp_path, missing):
    with pytest.raises(CheckpointError, match="no complete image tower|incomplete|missing"):
        vitzoo.load_model(_without(tmp_path, lambda k: k == missing), img_size=44)


def test_cut_off_two_tower_file_raises(tmp_path):
    data = (DATA / "so400m_scanned.npz").read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        vitzoo.load_model(path)


# -- timm interop ---------------------------------------------------------------------------------
def _timm_layout_model(gelu: str) -> vitzoo.VisionTransformer:
    """timm's ``vit_*_siglip_*`` build of the so400m-like tower, as a vitzoo config."""
    return vitzoo.VisionTransformer(vitzoo.ViTConfig(
        img_size=(44, 44), patch_size=(14, 14), embed_dim=18, depth=3, num_heads=3, mlp_dim=67,
        class_token=False, global_pool="map", num_classes=0, gelu_approximate=gelu)).eval()


def test_timm_state_dict_loads_strictly_and_matches_timm():
    """timm's ``_load_weights`` of the npz, saved; timm (gelu_tanh) vs big_vision: 1.1e-6."""
    state = load_file(DATA / "so400m_scanned_timm.safetensors")
    timm_out = load_file(DATA / "so400m_scanned_timm_ref.safetensors")
    model = _timm_layout_model("tanh")
    model.load_state_dict(state, strict=True)
    pixels = _ref("so400m_scanned")["pixels"]
    pooled, features = _outputs(model, pixels)
    np.testing.assert_allclose(pooled, timm_out["gelu_tanh_pooled"].double(), rtol=0, atol=ATOL)
    np.testing.assert_allclose(features, timm_out["gelu_tanh_features"].double(), rtol=0,
                               atol=ATOL)
    ours = vitzoo.load_model(DATA / "so400m_scanned.npz", img_size=44).state_dict()
    assert ours.keys() == state.keys()
    for key, value in state.items():
        torch.testing.assert_close(ours[key], value, rtol=0, atol=0, msg=key)


def test_timms_erf_gelu_build_differs_from_the_original():
    """timm builds So400m/14 and B/16 SigLIP with erf GELU; big_vision uses tanh. On this tower
    timm's erf build is 4.5e-4 away from big_vision (pooled output); vitzoo with erf reproduces
    timm's erf build, and vitzoo's default (tanh) reproduces big_vision."""
    state = load_file(DATA / "so400m_scanned_timm.safetensors")
    timm_out = load_file(DATA / "so400m_scanned_timm_ref.safetensors")
    ref = _ref("so400m_scanned")
    erf = _timm_layout_model("none")
    erf.load_state_dict(state, strict=True)
    pooled, _ = _outputs(erf, ref["pixels"])
    np.testing.assert_allclose(pooled, timm_out["gelu_pooled"].double(), rtol=0, atol=ATOL)
    gap = np.abs(timm_out["gelu_pooled"].double().numpy() - ref["pre_logits"]).max()
    assert 1e-4 < gap < 1e-3


@pytest.mark.parametrize("grid, size", [(27, 384), (16, 224)])
def test_a_patch14_table_reads_as_the_multiple_of_16_it_was_trained_at(tmp_path, grid, size):
    """A table records the grid, not the input size: 27 x 27 patches of 14 px are big_vision's
    So400m/14 at 384 (the VALID convolution drops 6 rows), not 378; 16 x 16 is exactly 224."""
    cfg = vitzoo.ViTConfig(img_size=grid * 14, patch_size=14, embed_dim=8, depth=1,
                           num_heads=2, mlp_dim=12, class_token=False, global_pool="map",
                           num_classes=0, gelu_approximate="tanh")
    model = vitzoo.build_model(cfg)
    arrays = J.from_vitzoo({k: v.numpy() for k, v in model.state_dict().items()},
                           num_heads=2, layout="big_vision")
    np.savez(tmp_path / "t.npz", **{f"params/img/{k}": v for k, v in arrays.items()})
    loaded = vitzoo.load_model(tmp_path / "t.npz")
    assert loaded.cfg.img_size == (size, size) and loaded.cfg.grid_size == (grid, grid)
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():  # the rows past the last whole patch are not seen, as in big_vision
        torch.testing.assert_close(loaded.eval()(x), model.eval()(x[..., :grid * 14, :grid * 14]),
                                   atol=1e-6, rtol=0)
