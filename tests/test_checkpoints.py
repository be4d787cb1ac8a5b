"""load_model / convert_checkpoint on Google .npz files in every layout, and vitzoo's own files."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import scipy.ndimage
import torch
from safetensors.torch import save_file

import vitzoo
from vitzoo import CheckpointError, ZeroHeadWarning
from vitzoo.adapters import jax_npz as J
from vitzoo.cli import main
from vitzoo.reference.verify import VerificationError, verify_against_jax

from conftest import jax_model, random_weights, tiny_cfg


def _state(model) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.state_dict().items()}


def _save(path, arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


def _big_vision_by_hand(model) -> dict[str, np.ndarray]:
    """big_vision's names written out from the document, block arrays stacked (scan=True)."""
    s = _state(model)
    D, H = model.embed_dim, model.cfg.num_heads
    L = model.cfg.depth

    def stack(fmt, fn):
        return np.stack([fn(s[fmt.format(i=i)]) for i in range(L)])

    qkv = lambda part: (lambda w: np.split(w, 3)[part].T.reshape(D, H, -1))  # noqa: E731
    qkv_b = lambda part: (lambda b: np.split(b, 3)[part].reshape(H, -1))  # noqa: E731
    blk = "params/Transformer/encoderblock/"
    arrays = {
        "params/embedding/kernel": s["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
        "params/embedding/bias": s["patch_embed.proj.bias"],
        "params/pos_embedding": s["pos_embed"],  # no class token: no class row
        "params/Transformer/encoder_norm/scale": s["norm.weight"],
        "params/Transformer/encoder_norm/bias": s["norm.bias"],
        "params/head/kernel": s["head.weight"].T,
        "params/head/bias": s["head.bias"],
        blk + "LayerNorm_0/scale": stack("blocks.{i}.norm1.weight", lambda a: a),
        blk + "LayerNorm_0/bias": stack("blocks.{i}.norm1.bias", lambda a: a),
        blk + "LayerNorm_1/scale": stack("blocks.{i}.norm2.weight", lambda a: a),
        blk + "LayerNorm_1/bias": stack("blocks.{i}.norm2.bias", lambda a: a),
        blk + "MlpBlock_0/Dense_0/kernel": stack("blocks.{i}.mlp.fc1.weight", np.transpose),
        blk + "MlpBlock_0/Dense_0/bias": stack("blocks.{i}.mlp.fc1.bias", lambda a: a),
        blk + "MlpBlock_0/Dense_1/kernel": stack("blocks.{i}.mlp.fc2.weight", np.transpose),
        blk + "MlpBlock_0/Dense_1/bias": stack("blocks.{i}.mlp.fc2.bias", lambda a: a),
        blk + "MultiHeadDotProductAttention_0/out/kernel": stack(
            "blocks.{i}.attn.proj.weight", lambda w: w.T.reshape(H, -1, D)),
        blk + "MultiHeadDotProductAttention_0/out/bias": stack("blocks.{i}.attn.proj.bias",
                                                               lambda a: a),
        # an optimizer state with the same parameter paths, partly bfloat16, must be ignored
        "opt/1/0/1/embedding/kernel": J.float32_to_bfloat16(np.ones((8, 8, 3, D), np.float32)),
        "opt/1/0/0": np.array(3),
    }
    for part, name in enumerate(("query", "key", "value")):
        m = f"{blk}MultiHeadDotProductAttention_0/{name}/"
        arrays[m + "kernel"] = stack("blocks.{i}.attn.qkv.weight", qkv(part))
        arrays[m + "bias"] = stack("blocks.{i}.attn.qkv.bias", qkv_b(part))
    return arrays


# -- every layout loads and reproduces the original model -----------------------------------------
LAYOUT_MODELS = {
    "token": dict(),
    "gap": dict(global_pool="avg", class_token=False),
    "representation": dict(representation_size=24),
    "hybrid_r": dict(backbone_layers=(1, 1), backbone_width=32, patch_size=1),
    "hybrid_stem": dict(backbone_layers=(), backbone_width=32, patch_size=2),
}


@pytest.mark.parametrize("case", sorted(LAYOUT_MODELS))
def test_published_layout_loads_with_the_original_logits(tmp_path, images, case):
    model = jax_model(**LAYOUT_MODELS[case])
    path = _save(tmp_path / "m.npz", J.from_vitzoo(_state(model), num_heads=4))
    loaded = vitzoo.load_model(path)
    assert loaded.cfg == model.cfg.replace(weight_init="jax", pos_embed_resample="scipy")
    torch.testing.assert_close(_logits(loaded, images), _logits(model, images), atol=1e-5,
                               rtol=0)


def test_linen_layout_loads(tmp_path, images):
    model = jax_model(backbone_layers=(1,), backbone_width=32, patch_size=2)
    published = J.from_vitzoo(_state(model), num_heads=4)
    linen = {}
    for key, value in published.items():
        key = (key.replace("MultiHeadDotProductAttention_1", "MultiHeadDotProductAttention_0")
               .replace("LayerNorm_2", "LayerNorm_1").replace("MlpBlock_3", "MlpBlock_0"))
        linen[key] = value.reshape(-1) if "/gn" in key else value  # GroupNorm (C,)
    loaded = vitzoo.load_model(_save(tmp_path / "linen.npz", linen))
    torch.testing.assert_close(_logits(loaded, images), _logits(model, images), atol=1e-5,
                               rtol=0)


def test_big_vision_file_written_by_hand_loads(tmp_path, images):
    model = jax_model(global_pool="avg", class_token=False)
    loaded = vitzoo.load_model(_save(tmp_path / "bv.npz", _big_vision_by_hand(model)))
    assert loaded.cfg.global_pool == "avg" and not loaded.cfg.class_token
    torch.testing.assert_close(_logits(loaded, images), _logits(model, images), atol=1e-5,
                               rtol=0)


@pytest.mark.parametrize("variant", ["params_prefix", "img_tower", "scanned", "bfloat16",
                                     "map", "sincos", "token"])
def test_big_vision_variants_load(tmp_path, images, variant):
    overrides = {"map": dict(global_pool="map", class_token=False),
                 "sincos": dict(pos_embed="sincos", global_pool="avg", class_token=False),
                 # no class token: folding the class row into cls would leave bfloat16's grid
                 "bfloat16": dict(global_pool="avg", class_token=False)}
    model = jax_model(**overrides.get(variant, {}))
    if variant == "bfloat16":  # values representable in bfloat16, so the file is exact
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())
    arrays = J.from_vitzoo(_state(model), num_heads=4, layout="big_vision")
    if variant == "scanned":
        arrays = J.scan_blocks(arrays)
    if variant == "bfloat16":
        arrays = {k: J.float32_to_bfloat16(v) for k, v in arrays.items()}
    if variant == "params_prefix":
        arrays = {"params/" + k: v for k, v in arrays.items()}
        arrays["opt/target/embedding/kernel"] = np.zeros(1, np.float32)
    if variant == "img_tower":
        arrays = {"params/img/" + k: v for k, v in arrays.items()}
        arrays["params/txt/Embed_0/embedding"] = np.zeros((3, 4), np.float32)
    extra = {"img_size": 32} if variant == "sincos" else {}
    loaded = vitzoo.load_model(_save(tmp_path / "bv.npz", arrays), **extra)
    torch.testing.assert_close(_logits(loaded, images), _logits(model, images), atol=1e-5,
                               rtol=0)


# -- the independent NumPy reference --------------------------------------------------------------
@pytest.mark.parametrize("case, layout", [
    ("token", "vision_transformer"), ("gap", "vision_transformer"),
    ("representation", "vision_transformer"), ("hybrid_r", "vision_transformer"),
    ("hybrid_stem", "vision_transformer"), ("map", "big_vision"), ("sincos", "big_vision"),
])
def test_numpy_reference_and_torch_agree_to_1e5(tmp_path, case, layout):
    overrides = {**LAYOUT_MODELS, "map": dict(global_pool="map", class_token=False),
                 "sincos": dict(pos_embed="sincos", global_pool="avg", class_token=False)}
    model = jax_model(**overrides[case])
    path = _save(tmp_path / "m.npz", J.from_vitzoo(_state(model), num_heads=4, layout=layout))
    assert verify_against_jax(path, model) <= 1e-5


def test_numpy_reference_agrees_on_the_real_vit_ti16(tmp_path):
    model = vitzoo.create_model("vit_tiny_patch16_224", gelu_approximate="tanh",
                                weight_init="jax", num_classes=10)
    random_weights(model, scale=0.05).eval()
    path = _save(tmp_path / "ti16.npz", J.from_vitzoo(_state(model), num_heads=3))
    assert verify_against_jax(path, model, batch=1) <= 1e-5


def test_exact_gelu_is_caught_by_the_reference(tmp_path):
    model = jax_model()
    path = _save(tmp_path / "m.npz", J.from_vitzoo(_state(model), num_heads=4))
    wrong = vitzoo.build_model(model.cfg.replace(gelu_approximate="none"))
    wrong.load_state_dict(model.state_dict())
    with pytest.raises(VerificationError, match="differs from Google's forward pass"):
        verify_against_jax(path, wrong, atol=1e-6)


# -- conversion -----------------------------------------------------------------------------------
def test_npz_to_safetensors_to_npz_is_bit_exact(tmp_path):
    model = jax_model(backbone_layers=(1, 1), backbone_width=32, patch_size=1,
                      representation_size=16)
    src = _save(tmp_path / "src.npz", J.from_vitzoo(_state(model), num_heads=4))
    mid = vitzoo.convert_checkpoint(src, tmp_path / "mid.safetensors", verify=True)
    back = vitzoo.convert_checkpoint(mid, tmp_path / "back.npz", verify=True)
    a, b = np.load(src), np.load(back)
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert a[key].tobytes() == b[key].tobytes(), key


def test_big_vision_bf16_scanned_prefixed_file_round_trips(tmp_path):
    model = jax_model()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    arrays = J.scan_blocks(J.from_vitzoo(_state(model), num_heads=4, layout="big_vision"))
    arrays = {"params/" + k: J.float32_to_bfloat16(v) for k, v in arrays.items()}
    src = _save(tmp_path / "bv.npz", arrays)
    mid = vitzoo.convert_checkpoint(src, tmp_path / "bv.safetensors")
    back = np.load(vitzoo.convert_checkpoint(mid, tmp_path / "back.npz"))
    assert sorted(back.files) == sorted(arrays)
    for key, value in arrays.items():
        assert back[key].dtype == value.dtype and back[key].tobytes() == value.tobytes(), key


def test_converted_file_is_self_describing(tmp_path, images):
    model = jax_model(representation_size=24)
    src = _save(tmp_path / "m.npz", J.from_vitzoo(_state(model), num_heads=4))
    out = vitzoo.convert_checkpoint(src, tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    cfg = json.loads(meta["vitzoo_config"])
    assert cfg["gelu_approximate"] == "tanh" and cfg["representation_size"] == 24
    assert json.loads(meta["pretrained_cfg"])["mean"] == [0.5, 0.5, 0.5]
    assert meta["source_layout"] == "vision_transformer"
    loaded = vitzoo.load_model(out)
    torch.testing.assert_close(_logits(loaded, images), _logits(model, images), atol=1e-6,
                               rtol=0)


def test_save_model_and_hub_directory_load(tmp_path, images):
    model = random_weights(vitzoo.create_model("vit_ti16", num_classes=3, depth=1)).eval()
    path = vitzoo.save_model(model, tmp_path / "ti.safetensors")
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(_logits(vitzoo.load_model(path), x), _logits(model, x),
                               atol=0, rtol=0)
    hub = tmp_path / "hub"
    hub.mkdir()
    save_file(model.state_dict(), str(hub / "model.safetensors"))
    (hub / "config.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224",
                                                 "num_classes": 3}))
    with pytest.raises(CheckpointError):  # the hub config says 12 blocks, the file has 1
        vitzoo.load_model(hub)
    (hub / "config.json").write_text(json.dumps({"vitzoo_config": model.cfg.to_dict()}))
    torch.testing.assert_close(_logits(vitzoo.load_model(hub), x), _logits(model, x),
                               atol=0, rtol=0)


# -- loading into a different shape ---------------------------------------------------------------
def test_other_class_count_gets_a_zero_head_and_a_report(tmp_path, images):
    model = jax_model(representation_size=24)
    path = _save(tmp_path / "m.npz", J.from_vitzoo(_state(model), num_heads=4))
    loaded = vitzoo.load_model(path, num_classes=10)
    assert loaded.head.out_features == 10
    assert torch.all(loaded.head.weight == 0) and torch.all(loaded.head.bias == 0)
    assert sorted(loaded.load_report.dropped) == ["head.bias", "head.weight"]
    torch.testing.assert_close(loaded.forward_head(loaded.forward_features(images), True),
                               model.forward_head(model.forward_features(images), True),
                               atol=1e-6, rtol=0)
    no_rep = vitzoo.load_model(path, num_classes=10, representation_size=None)
    assert "pre_logits.fc.weight" in no_rep.load_report.dropped
    assert "pre_logits" in no_rep.load_report.describe()


def test_other_image_size_resamples_with_scipy_zoom_by_default(tmp_path):
    model = jax_model(img_size=112, patch_size=8)  # 14x14 grid
    path = _save(tmp_path / "m.npz", J.from_vitzoo(_state(model), num_heads=4))
    loaded = vitzoo.load_model(path, img_size=192)  # 24x24 grid
    table = model.pos_embed.detach().numpy()
    expected = scipy.ndimage.zoom(table[0, 1:].reshape(14, 14, 32), (24 / 14, 24 / 14, 1),
                                  order=1)
    got = loaded.pos_embed.detach().numpy()
    assert np.array_equal(got[0, 1:].reshape(24, 24, 32), expected)
    assert np.array_equal(got[:, :1], table[:, :1])  # the class token's row is kept
    assert loaded.load_report.resampled == {"pos_embed": "14x14 -> 24x24, scipy"}
    rect = vitzoo.load_model(path, img_size=(96, 160), resample="bicubic")
    assert rect.pos_embed.shape == (1, 1 + 12 * 20, 32)
    expected = torch.nn.functional.interpolate(
        model.pos_embed[:, 1:].reshape(1, 14, 14, 32).permute(0, 3, 1, 2), size=(12, 20),
        mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, -1, 32)
    torch.testing.assert_close(rect.pos_embed[:, 1:], expected, atol=1e-6, rtol=0)
    with pytest.raises(vitzoo.VitzooError, match="resample='nearest'"):
        vitzoo.load_model(path, resample="nearest")
    small = vitzoo.load_model(path, img_size=64, resample="bilinear", antialias=True)
    expected = torch.nn.functional.interpolate(
        model.pos_embed[:, 1:].reshape(1, 14, 14, 32).permute(0, 3, 1, 2), size=(8, 8),
        mode="bilinear", align_corners=False, antialias=True).permute(0, 2, 3, 1)
    torch.testing.assert_close(small.pos_embed[:, 1:], expected.reshape(1, -1, 32), atol=1e-6,
                               rtol=0)
    assert small.load_report.resampled["pos_embed"].endswith("bilinear with antialias")


def test_create_model_points_npz_files_to_load_model(tmp_path):
    path = _save(tmp_path / "m.npz", J.from_vitzoo(_state(jax_model()), num_heads=4))
    with pytest.raises(CheckpointError, match="use vitzoo.load_model"):
        vitzoo.create_model("vit_ti16", checkpoint_path=path)


def test_a_zeroed_21k_head_is_reported(tmp_path):
    model = jax_model(representation_size=24)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    path = _save(tmp_path / "i21k.npz", J.from_vitzoo(_state(model), num_heads=4))
    with pytest.warns(ZeroHeadWarning, match="all zeros .* num_classes=0"):
        vitzoo.load_model(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vitzoo.load_model(path, num_classes=0)


# -- bad input ------------------------------------------------------------------------------------
def _bad_files(tmp_path):
    good = _save(tmp_path / "good.npz", J.from_vitzoo(_state(jax_model()), num_heads=4))
    data = open(good, "rb").read()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    foreign = _save(tmp_path / "foreign.npz", {"conv1/kernel": np.zeros((3, 3, 3, 8))})
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, obj=np.array([{"a": 1}], dtype=object))
    return {"truncated": truncated, "corrupt": corrupt, "foreign": foreign, "pickled": pickled}


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "foreign", "pickled"])
def test_bad_npz_gives_a_clear_error_and_no_output(tmp_path, kind):
    src = _bad_files(tmp_path)[kind]
    out_dir = tmp_path / "out"
    with pytest.raises(CheckpointError) as err:
        vitzoo.convert_checkpoint(src, out_dir / "x.safetensors")
    assert str(src) in str(err.value)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []
    with pytest.raises(CheckpointError):
        vitzoo.load_model(src)


def test_failed_verification_leaves_nothing(tmp_path, verification_off_by_a_little):
    model = jax_model()
    src = _save(tmp_path / "m.npz", J.from_vitzoo(_state(model), num_heads=4))
    with pytest.raises(VerificationError):
        vitzoo.convert_checkpoint(src, tmp_path / "out" / "m.safetensors", verify=True)
    assert list((tmp_path / "out").iterdir()) == []


def test_models_google_cannot_express_are_refused(tmp_path):
    model = random_weights(vitzoo.build_model(tiny_cfg(global_pool="avg", fc_norm=True)))
    src = vitzoo.save_model(model, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="fc_norm pooling"):
        vitzoo.convert_checkpoint(src, tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_plain_state_dicts_point_to_create_model(tmp_path):
    save_file(jax_model().state_dict(), str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="create_model"):
        vitzoo.load_model(tmp_path / "plain.safetensors")


# -- the command ----------------------------------------------------------------------------------
def test_vitzoo_convert_command(tmp_path, capsys):
    src = _save(tmp_path / "m.npz", J.from_vitzoo(_state(jax_model()), num_heads=4))
    dst = tmp_path / "m.safetensors"
    assert main(["convert", src, str(dst), "--verify"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {dst}") and "verified" in out
    assert main(["convert", str(tmp_path / "missing.npz"), str(dst)]) == 2
    assert "does not exist" in capsys.readouterr().err
