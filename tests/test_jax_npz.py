"""The Google .npz adapter on its own: transforms, renaming, layouts, architecture inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitzoo.adapters import big_vision
from vitzoo.adapters import jax_npz as J

from conftest import jax_model


def _state(model) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.state_dict().items()}


# -- transforms -----------------------------------------------------------------------------------
def test_conv_kernels_are_hwio_in_jax_and_oihw_in_torch():
    k = np.random.default_rng(0).normal(size=(4, 4, 3, 8)).astype(np.float32)  # HWIO
    w = J.conv_kernel_to_torch(k)
    assert w.shape == (8, 3, 4, 4) and w[5, 2, 1, 3] == k[1, 3, 2, 5]
    np.testing.assert_array_equal(J.conv_kernel_to_jax(w), k)


def test_attention_kernels_match_googles_einsums():
    rng = np.random.default_rng(0)
    D, H, hd = 12, 3, 4
    x = rng.normal(size=(2, 5, D))
    kq, bq = rng.normal(size=(D, H, hd)), rng.normal(size=(H, hd))
    expected = np.einsum("bnd,dhk->bnhk", x, kq) + bq  # Google's query projection
    got = F.linear(torch.from_numpy(x), torch.from_numpy(J.heads_in_to_torch(kq)),
                   torch.from_numpy(bq.reshape(-1))).numpy()
    np.testing.assert_allclose(got.reshape(2, 5, H, hd), expected, atol=1e-12)
    np.testing.assert_array_equal(J.heads_in_to_jax(J.heads_in_to_torch(kq), H), kq)
    ko = rng.normal(size=(H, hd, D))
    o = rng.normal(size=(2, 5, H, hd))
    expected = np.einsum("bqhk,hkd->bqd", o, ko)
    got = torch.from_numpy(o.reshape(2, 5, -1)) @ torch.from_numpy(J.heads_out_to_torch(ko)).T
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
    np.testing.assert_array_equal(J.heads_out_to_jax(J.heads_out_to_torch(ko), H), ko)


def test_attention_biases_and_group_norms_are_flat_in_torch():
    b = np.random.default_rng(0).normal(size=(3, 4))  # (H, hd)
    flat = J.flatten(b)
    assert flat.shape == (12,) and flat[5] == b[1, 1]  # head-major, like the kernels' rows
    np.testing.assert_array_equal(J.heads_bias_to_jax(flat, 3), b)
    gn = np.arange(8.0).reshape(1, 1, 1, 8)
    np.testing.assert_array_equal(J.flatten(gn), np.arange(8.0))


def test_the_table_uses_the_named_transforms():
    assert J.TABLE.rules == J.RENAMES
    assert J.TRANSFORMS["conv"] == (J.conv_kernel_to_torch, J.conv_kernel_to_jax, ())
    assert J.TRANSFORMS["heads_in"] == (J.heads_in_to_torch, J.heads_in_to_jax, ("num_heads",))
    assert J.TRANSFORMS["heads_out"].from_vitzoo is J.heads_out_to_jax
    assert J.TRANSFORMS["heads_bias"] == (J.flatten, J.heads_bias_to_jax, ("num_heads",))


def test_bfloat16_is_the_upper_half_of_float32():
    values = np.array([1.0, -2.5, 3.140625, 0.0], dtype=np.float32)
    stored = (values.view(np.uint32) >> 16).astype(np.uint16).view("V2")
    assert stored.dtype.kind == "V" and stored.dtype.itemsize == 2
    np.testing.assert_array_equal(J.bfloat16_to_float32(stored), values)
    np.testing.assert_array_equal(J.float32_to_bfloat16(values).view(np.uint16),
                                  stored.view(np.uint16))
    assert J.float32_to_bfloat16(np.float32([1.0])).view(np.uint16)[0] == 0x3F80


# -- names and layouts ----------------------------------------------------------------------------
def test_pre_linen_renumbering_follows_flax():
    keys = [
        "Transformer/encoderblock_0/LayerNorm_0/scale",
        "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel",
        "Transformer/encoderblock_0/LayerNorm_2/scale",
        "Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel",
        "Transformer/encoderblock_0/MlpBlock_3/Dense_1/kernel",
        "Transformer/encoderblock_10/LayerNorm_0/scale",
        "Transformer/encoderblock_2/LayerNorm_0/scale",
    ]
    mapping = J.renumber_pre_linen(keys)
    assert [mapping[k] for k in keys] == [
        "Transformer/encoderblock_0/LayerNorm_0/scale",
        "Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel",
        "Transformer/encoderblock_0/LayerNorm_1/scale",
        "Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel",
        "Transformer/encoderblock_0/MlpBlock_0/Dense_1/kernel",
        # blocks 0, 2, 10 are renumbered 0, 1, 2 in natural (not lexical) order, as flax does
        "Transformer/encoderblock_2/LayerNorm_0/scale",
        "Transformer/encoderblock_1/LayerNorm_0/scale",
    ]
    linen = list(mapping.values())
    assert J.renumber_pre_linen(linen) == {k: k for k in linen}  # idempotent


def test_select_params_prefers_params_and_ignores_optimizer_state():
    a = np.zeros(1, np.float32)
    arrays = {"params/embedding/kernel": a, "opt/target/embedding/kernel": a + 1,
              "opt/1/0/1/embedding/kernel": a + 2, "chrono/accum_train_time": a}
    assert J.select_params(arrays) == {"embedding/kernel": a}
    assert list(J.select_params({"opt/target/cls": a, "opt/state/step": a})) == ["cls"]
    tower = J.select_params({"params/img/embedding/kernel": a, "params/txt/Embed_0": a,
                             "params/t": a})
    assert list(tower) == ["embedding/kernel"]


def _used_rows(tree) -> set[str]:
    used = set()
    for key in tree:
        found = J.TABLE.match(key)
        if found is not None:
            used.add(found[0].source)
    return used


@pytest.mark.parametrize("layout", ["vision_transformer", "big_vision"])
def test_every_rename_row_is_exercised_key_by_key(layout):
    models = [jax_model(representation_size=24),
              jax_model(global_pool="map", class_token=False),
              jax_model(backbone_layers=(1, 1), backbone_width=32, patch_size=1),
              jax_model(backbone_layers=(), backbone_width=32, patch_size=2)]
    used = set()
    for model in models:
        if layout == "big_vision" and model.cfg.backbone_layers is not None:
            continue
        state = _state(model)
        tree, _ = J.canonicalize(J.from_vitzoo(state, num_heads=4, layout=layout))
        used |= _used_rows(tree)
        back = J.to_vitzoo(tree)
        assert sorted(back) == sorted(state)
        if layout == "vision_transformer":
            for key in state:
                np.testing.assert_array_equal(back[key], state[key], err_msg=key)
    if layout == "vision_transformer":
        used |= _used_rows(J.canonicalize(J.from_vitzoo(_state(models[1]), num_heads=4,
                                                        layout="big_vision"))[0])
        assert used == {row[0] for row in J.RENAMES}


def test_the_stem_only_hybrid_has_no_stem_level():
    stem_only = _state(jax_model(backbone_layers=(), backbone_width=32, patch_size=2))
    staged = _state(jax_model(backbone_layers=(1,), backbone_width=32, patch_size=1))
    for state, prefix in ((stem_only, "patch_embed.backbone."),
                          (staged, "patch_embed.backbone.stem.")):
        assert prefix + "conv.weight" in state
        arrays = J.from_vitzoo(state, num_heads=4)
        np.testing.assert_array_equal(arrays["conv_root/kernel"],
                                      J.conv_kernel_to_jax(state[prefix + "conv.weight"]))
        back = J.to_vitzoo(J.canonicalize(arrays)[0])
        assert [k for k in back if "backbone" in k and ".stages." not in k] == [
            prefix + "conv.weight", prefix + "norm.bias", prefix + "norm.weight"]


def test_published_layout_has_googles_names_and_shapes():
    model = jax_model(backbone_layers=(1, 1), backbone_width=32, patch_size=1)
    arrays = J.from_vitzoo(_state(model), num_heads=4)
    shapes = {k: v.shape for k, v in arrays.items()}
    assert shapes["Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel"] == (
        32, 4, 8)
    assert shapes["Transformer/encoderblock_1/MultiHeadDotProductAttention_1/out/kernel"] == (
        4, 8, 32)
    assert shapes["Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel"] == (32, 64)
    assert shapes["Transformer/encoderblock_0/LayerNorm_2/scale"] == (32,)
    assert shapes["Transformer/posembed_input/pos_embedding"] == (1, 17, 32)
    assert shapes["conv_root/kernel"] == (7, 7, 3, 32)
    assert shapes["gn_root/scale"] == (1, 1, 1, 32)
    assert shapes["block2/unit1/conv2/kernel"] == (3, 3, 64, 64)
    assert shapes["block2/unit1/conv_proj/kernel"] == (1, 1, 128, 256)
    assert shapes["embedding/kernel"] == (1, 1, 256, 32)
    assert not any("MultiHeadDotProductAttention_0" in k for k in arrays)


def test_big_vision_table_has_no_class_row_and_folds_it_into_cls():
    model = jax_model()
    state = _state(model)
    arrays = J.from_vitzoo(state, num_heads=4, layout="big_vision")
    assert arrays["pos_embedding"].shape == (1, 16, 32)
    np.testing.assert_array_equal(arrays["cls"], state["cls_token"] + state["pos_embed"][:, :1])
    tree, notes = J.canonicalize(arrays)
    assert notes["layout"] == "big_vision"
    back = J.to_vitzoo(tree)
    assert np.all(back["pos_embed"][:, 0] == 0)  # the class token gets no position in bv


def test_old_style_top_level_table_keeps_its_class_row():
    model = jax_model()
    state = _state(model)
    arrays = J.from_vitzoo(state, num_heads=4)
    arrays["Transformer/pos_embedding"] = arrays.pop("Transformer/posembed_input/pos_embedding")
    tree, _ = J.canonicalize(arrays)
    np.testing.assert_array_equal(J.to_vitzoo(tree)["pos_embed"], state["pos_embed"])


def test_scanned_blocks_unscan_to_views_and_scan_back():
    state = _state(jax_model())
    per_block = J.from_vitzoo(state, num_heads=4, layout="big_vision")
    scanned = big_vision.scan_blocks(per_block)
    key = "Transformer/encoderblock/MlpBlock_0/Dense_0/kernel"
    assert scanned[key].shape == (2, 32, 64)
    assert not any(k.startswith("Transformer/encoderblock_") for k in scanned)
    unscanned = big_vision.unscan(scanned)
    assert sorted(unscanned) == sorted(per_block)
    for k in per_block:
        np.testing.assert_array_equal(unscanned[k], per_block[k], err_msg=k)
    assert np.shares_memory(unscanned["Transformer/encoderblock_1/MlpBlock_0/Dense_0/kernel"],
                            scanned[key])


def test_big_vision_position_table_gets_a_zero_class_row_and_folds_back():
    rng = np.random.default_rng(0)
    cls, table = rng.normal(size=(1, 1, 8)), rng.normal(size=(1, 4, 8))  # 2x2 patches
    rest, placed = big_vision.split_pos_embedding({"cls": cls, "pos_embedding": table})
    assert list(rest) == ["cls"] and placed.shape == (1, 5, 8)
    assert not placed[:, 0].any()
    np.testing.assert_array_equal(placed[:, 1:], table)
    back = big_vision.join_pos_embedding(rest, placed)
    np.testing.assert_array_equal(back["pos_embedding"], table)
    np.testing.assert_array_equal(back["cls"], cls)
    rest, placed = big_vision.split_pos_embedding({"cls": cls})
    assert list(rest) == ["cls"] and placed is None  # sin-cos: no table stored
    gap, placed = big_vision.split_pos_embedding({"pos_embedding": table})
    assert gap == {} and placed is table  # no class token, no class row


def test_big_vision_pieces_stay_reachable_from_jax_npz():
    for name in ("select_params", "scan_blocks", "bfloat16_to_float32", "float32_to_bfloat16"):
        assert getattr(J, name) is getattr(big_vision, name)
    values = np.array([1.0, -2.5, 3.140625], np.float32)
    np.testing.assert_array_equal(big_vision.to_float32(J.float32_to_bfloat16(values)), values)
    assert big_vision.to_float32(values) is values
    assert set(big_vision.MAP_HEAD_RENAMES) <= set(J.RENAMES)


@pytest.mark.parametrize("overrides, expected", [
    (dict(), dict(global_pool="token", class_token=True, num_classes=5)),
    (dict(global_pool="avg", class_token=False), dict(global_pool="avg", class_token=False)),
    (dict(global_pool="map", class_token=False), dict(global_pool="map")),
    (dict(representation_size=24, num_classes=0), dict(representation_size=24, num_classes=0)),
    (dict(backbone_layers=(1, 1), backbone_width=32, patch_size=1, img_size=64),
     dict(backbone_layers=(1, 1), backbone_width=32, patch_size=(1, 1), img_size=(64, 64))),
    (dict(backbone_layers=(), backbone_width=32, patch_size=2),
     dict(backbone_layers=(), patch_size=(2, 2), img_size=(32, 32))),
])
def test_architecture_is_read_off_the_shapes(overrides, expected):
    model = jax_model(**overrides)
    layout = "big_vision" if model.cfg.global_pool == "map" else "vision_transformer"
    tree, notes = J.canonicalize(J.from_vitzoo(_state(model), num_heads=4, layout=layout))
    fields = J.infer_config(tree, notes)
    assert {k: fields[k] for k in expected} == expected
    assert (fields["embed_dim"], fields["depth"], fields["num_heads"], fields["mlp_dim"]) == (
        32, 2, 4, 64)
    assert fields["gelu_approximate"] == "tanh" and fields["norm_eps"] == 1e-6


def test_inference_errors_say_what_is_missing():
    model = jax_model(pos_embed="sincos", global_pool="avg", class_token=False)
    tree, notes = J.canonicalize(J.from_vitzoo(_state(model), num_heads=4, layout="big_vision"))
    with pytest.raises(ValueError, match="no position table .* pass img_size"):
        J.infer_config(tree, notes)
    assert J.infer_config(tree, notes, (32, 32))["pos_embed"] == "sincos"
    with pytest.raises(ValueError, match="not a Google ViT checkpoint"):
        J.infer_config({"conv1/kernel": np.zeros((3, 3, 3, 8))}, {"pos_embed": "learn"})


def test_unknown_arrays_are_named():
    tree = {"embedding/kernel": np.zeros((2, 2, 3, 4), np.float32),
            "Transformer/encoderblock_0/Gate_0/kernel": np.zeros((4, 4), np.float32)}
    with pytest.raises(KeyError, match="Gate_0/kernel"):
        J.to_vitzoo(tree)
