"""The shared rename engine on its own: fields and offsets, transforms, fused parts, streaming."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from vitzoo.adapters.rename import (
    RenameTable,
    Rule,
    Transform,
    contiguous,
    fuse_parts,
    split_parts,
)

LIBRARIES = {
    "numpy": lambda a: np.asarray(a, dtype=np.float32),
    "torch": lambda a: torch.tensor(a, dtype=torch.float32),
}


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return type(a) is type(b) and torch.equal(a, b)
    return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)


def _rows(make, start: int, rows: int = 2, cols: int = 3):
    return make(np.arange(start, start + rows * cols, dtype=np.float32).reshape(rows, cols))


def _transpose_heads(w, num_heads):
    return contiguous(w.T.reshape(w.shape[1], num_heads, -1))


def _heads_to_rows(k):
    return contiguous(k.reshape(k.shape[0], -1).T)


HEADS = Transform(_heads_to_rows, _transpose_heads, needs=("num_heads",))

TABLE = RenameTable([
    Rule("layer_{i}/norm/scale", "blocks.{i}.norm1.weight"),
    Rule("layer_{i}/query", "blocks.{i}.attn.qkv.weight", part=(0, 3)),
    Rule("layer_{i}/key", "blocks.{i}.attn.qkv.weight", part=(1, 3)),
    Rule("layer_{i}/value", "blocks.{i}.attn.qkv.weight", part=(2, 3)),
    Rule("block{s+1}/unit{u+1}/conv{c}", "stages.{s}.blocks.{u}.conv{c}.weight"),
    Rule("proj/kernel", "proj.weight", "heads"),
], {"heads": HEADS})


# -- templates ------------------------------------------------------------------------------------
def test_a_field_with_an_offset_counts_from_one_in_the_source():
    table = RenameTable([Rule("block{s+1}/unit{u+1}/conv{c}/kernel",
                              "patch_embed.backbone.stages.{s}.blocks.{u}.conv{c}.weight")])
    rule = table.rules[0]
    assert table.match("block3/unit10/conv2/kernel") == (
        rule, "patch_embed.backbone.stages.2.blocks.9.conv2.weight")
    a = np.zeros(1, np.float32)
    out, _ = table.from_vitzoo({"patch_embed.backbone.stages.0.blocks.0.conv1.weight": a})
    assert list(out) == ["block1/unit1/conv1/kernel"]
    assert table.match("block0/unit1/conv1/kernel") is None  # there is no block 0 when 1-based
    assert table.match("block1/unit1/conv1/kernel/extra") is None
    assert table.match("xblock1/unit1/conv1/kernel") is None


def test_a_field_without_an_offset_keeps_its_digits():
    table = RenameTable([Rule("layer.{i}.ln", "blocks.{i}.norm1.weight"), Rule("a.b", "c")])
    assert table.match("layer.07.ln")[1] == "blocks.07.norm1.weight"
    a = np.zeros(1, np.float32)
    assert list(table.from_vitzoo({"blocks.07.norm1.weight": a})[0]) == ["layer.07.ln"]
    assert table.match("aXb") is None  # literal text is escaped


def test_the_table_renames_with_offsets_both_ways():
    assert TABLE.match("block2/unit1/conv3") == (TABLE.rules[4], "stages.1.blocks.0.conv3.weight")
    assert TABLE.match("block0/unit1/conv3") is None
    a = np.ones(2, np.float32)
    out, unmatched = TABLE.from_vitzoo({"stages.0.blocks.3.conv1.weight": a})
    assert list(out) == ["block1/unit4/conv1"] and unmatched == []


# -- parts ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("lib", LIBRARIES)
def test_parts_are_fused_in_row_order_whatever_order_they_arrive(lib):
    make = LIBRARIES[lib]
    q, k, v = _rows(make, 0), _rows(make, 10), _rows(make, 20)
    state = {"layer_0/value": v, "layer_0/query": q, "layer_0/key": k}
    out, unmatched = TABLE.to_vitzoo(state)
    assert unmatched == [] and list(out) == ["blocks.0.attn.qkv.weight"]
    expected = make(np.concatenate([np.asarray(q), np.asarray(k), np.asarray(v)]))
    assert _equal(out["blocks.0.attn.qkv.weight"], expected)


@pytest.mark.parametrize("lib", LIBRARIES)
def test_a_fused_tensor_splits_back_into_contiguous_parts(lib):
    make = LIBRARIES[lib]
    qkv = make(np.arange(18, dtype=np.float32).reshape(6, 3))
    out, unmatched = TABLE.from_vitzoo({"blocks.4.attn.qkv.weight": qkv})
    assert unmatched == [] and list(out) == ["layer_4/query", "layer_4/key", "layer_4/value"]
    for name, rows in zip(out, (slice(0, 2), slice(2, 4), slice(4, 6)), strict=True):
        assert _equal(out[name], qkv[rows])
    if lib == "torch":
        assert all(t.is_contiguous() for t in out.values())


def test_incomplete_parts_are_reported_not_guessed():
    make = LIBRARIES["numpy"]
    state = {"layer_0/query": _rows(make, 0), "layer_1/key": _rows(make, 1),
             "layer_0/value": _rows(make, 2)}
    out, unmatched = TABLE.to_vitzoo(state)
    assert out == {}
    assert unmatched == ["blocks.0.attn.qkv.weight[part 0]", "blocks.0.attn.qkv.weight[part 2]",
                         "blocks.1.attn.qkv.weight[part 1]"]
    seen = []
    assert list(TABLE.iter_to_vitzoo(state.items(), on_incomplete=seen.append)) == []
    assert seen == [{"blocks.0.attn.qkv.weight": [0, 2], "blocks.1.attn.qkv.weight": [1]}]
    with pytest.raises(KeyError, match=r"blocks.0.attn.qkv.weight \(has parts \[0, 2\]\)"):
        list(TABLE.iter_to_vitzoo(state.items()))


# -- streaming ------------------------------------------------------------------------------------
def test_the_iterator_yields_each_tensor_as_soon_as_it_is_complete():
    make = LIBRARIES["numpy"]
    consumed: list[str] = []

    def source():
        for key in ("layer_0/norm/scale", "layer_0/query", "layer_0/key", "layer_0/value",
                    "layer_1/norm/scale"):
            consumed.append(key)
            yield key, _rows(make, len(consumed))

    stream = TABLE.iter_to_vitzoo(source())
    assert next(stream)[0] == "blocks.0.norm1.weight" and len(consumed) == 1
    assert next(stream)[0] == "blocks.0.attn.qkv.weight" and len(consumed) == 4
    assert next(stream)[0] == "blocks.1.norm1.weight" and len(consumed) == 5
    assert next(stream, None) is None


def test_the_iterator_keeps_no_part_once_its_tensor_is_fused():
    converted: list[weakref.ref] = []

    def doubled(a):  # a transform that makes a new array, as the transposes do
        out = a * 2
        converted.append(weakref.ref(out))
        return out

    table = RenameTable([Rule("q", "qkv", "double", (0, 3)), Rule("k", "qkv", "double", (1, 3)),
                         Rule("v", "qkv", "double", (2, 3)), Rule("n", "norm")],
                        {"double": Transform(doubled, contiguous)})
    make = LIBRARIES["numpy"]
    stream = table.iter_to_vitzoo((k, _rows(make, i)) for i, k in enumerate("qkvn"))
    name, fused = next(stream)
    gc.collect()
    assert name == "qkv" and len(converted) == 3
    assert all(ref() is None for ref in converted)  # only the fused tensor is alive
    assert _equal(fused, make(2 * np.concatenate([np.asarray(_rows(make, i)) for i in range(3)])))
    assert [k for k, _ in stream] == ["norm"]


def test_the_dict_form_lists_plain_tensors_first_then_fused_ones_by_first_part():
    make = LIBRARIES["torch"]
    keys = ["layer_1/query", "layer_0/query", "layer_0/norm/scale", "layer_0/key",
            "layer_0/value", "layer_1/key", "layer_1/value", "layer_1/norm/scale"]
    out, _ = TABLE.to_vitzoo({k: _rows(make, i) for i, k in enumerate(keys)})
    assert list(out) == ["blocks.0.norm1.weight", "blocks.1.norm1.weight",
                         "blocks.1.attn.qkv.weight", "blocks.0.attn.qkv.weight"]
    streamed = [k for k, _ in TABLE.iter_to_vitzoo((k, _rows(make, i)) for i, k in
                                                   enumerate(keys))]
    assert streamed == ["blocks.0.norm1.weight", "blocks.0.attn.qkv.weight",
                        "blocks.1.attn.qkv.weight", "blocks.1.norm1.weight"]


def test_unmatched_keys_are_reported_to_the_caller():
    a = np.zeros(1, np.float32)
    state = {"stray": a, "layer_0/norm/scale": a, "block1/unit1/gn1": a}
    out, unmatched = TABLE.to_vitzoo(state)
    assert list(out) == ["blocks.0.norm1.weight"] and unmatched == ["stray", "block1/unit1/gn1"]
    seen = []
    list(TABLE.iter_to_vitzoo(state.items(), on_unmatched=lambda k, v: seen.append((k, v))))
    assert [k for k, _ in seen] == ["stray", "block1/unit1/gn1"] and seen[0][1] is a
    with pytest.raises(KeyError, match="'stray' matches no rule"):
        list(TABLE.iter_to_vitzoo(state.items()))
    assert TABLE.from_vitzoo({"cls_token": a, "blocks.0.norm1.weight": a})[1] == ["cls_token"]
    with pytest.raises(KeyError, match="'cls_token' matches no rule"):
        list(TABLE.iter_from_vitzoo({"cls_token": a}.items()))


# -- transforms -----------------------------------------------------------------------------------
def test_a_transform_runs_forward_and_back_with_its_context():
    kernel = np.arange(24, dtype=np.float32).reshape(4, 2, 3)  # (D, H, hd)
    out, _ = TABLE.to_vitzoo({"proj/kernel": kernel})
    assert _equal(out["proj.weight"], np.ascontiguousarray(kernel.reshape(4, 6).T))
    back, _ = TABLE.from_vitzoo(out, context={"num_heads": 2})
    assert _equal(back["proj/kernel"], kernel)
    with pytest.raises(ValueError, match="'proj.weight' back needs num_heads="):
        TABLE.from_vitzoo(out)


def test_copy_keeps_the_array_and_copies_only_to_make_it_contiguous():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    out, _ = TABLE.to_vitzoo({"layer_0/norm/scale": a})
    assert out["blocks.0.norm1.weight"] is a
    back, _ = TABLE.from_vitzoo({"blocks.0.norm1.weight": a.T})
    assert back["layer_0/norm/scale"].flags.c_contiguous
    assert _equal(back["layer_0/norm/scale"], np.ascontiguousarray(a.T))
    t = torch.arange(6.0).reshape(2, 3)
    assert contiguous(t) is t and contiguous(t.T).is_contiguous()


@pytest.mark.parametrize("lib", LIBRARIES)
def test_fuse_and_split_use_the_arrays_library(lib):
    make = LIBRARIES[lib]
    parts = {1: _rows(make, 6), 0: _rows(make, 0)}
    fused = fuse_parts(parts, 2)
    assert _equal(fused, make(np.arange(12, dtype=np.float32).reshape(4, 3)))
    halves = split_parts(fused, 2)
    assert len(halves) == 2 and _equal(halves[0], parts[0]) and _equal(halves[1], parts[1])


@pytest.mark.parametrize("lib", LIBRARIES)
def test_round_trip_gives_back_the_same_keys_and_arrays(lib):
    make = LIBRARIES[lib]
    rng = np.random.default_rng(0)
    state = {
        "layer_0/norm/scale": make(rng.normal(size=4)),
        "layer_0/query": make(rng.normal(size=(4, 4))),
        "layer_0/key": make(rng.normal(size=(4, 4))),
        "layer_0/value": make(rng.normal(size=(4, 4))),
        "block1/unit2/conv3": make(rng.normal(size=(2, 2))),
        "proj/kernel": make(rng.normal(size=(4, 2, 2))),
    }
    out, unmatched = TABLE.to_vitzoo(state)
    assert unmatched == [] and sorted(out) == sorted([
        "blocks.0.norm1.weight", "blocks.0.attn.qkv.weight", "stages.0.blocks.1.conv3.weight",
        "proj.weight"])
    back, unmatched = TABLE.from_vitzoo(out, context={"num_heads": 2})
    assert unmatched == [] and sorted(back) == sorted(state)
    for key in state:
        assert _equal(back[key], state[key]), key


# -- tables ---------------------------------------------------------------------------------------
def test_on_the_way_back_the_first_plain_rule_wins():
    table = RenameTable([Rule("mlp.0.weight", "fc1.weight"), Rule("mlp.linear_1.weight",
                                                                   "fc1.weight")])
    a = np.zeros(1, np.float32)
    assert list(table.from_vitzoo({"fc1.weight": a})[0]) == ["mlp.0.weight"]
    assert list(table.to_vitzoo({"mlp.linear_1.weight": a})[0]) == ["fc1.weight"]
    assert [r.source for r in table.rules] == ["mlp.0.weight", "mlp.linear_1.weight"]
    assert table.rules[0] == ("mlp.0.weight", "fc1.weight", "copy", None)  # rows are tuples


@pytest.mark.parametrize("rules, message", [
    ([Rule("a.{i}", "b.{i}", "transpose")], "names the transform 'transpose'"),
    ([Rule("a.{i}", "b.{j}")], "have different fields"),
    ([Rule("a.{i}.{i}", "b.{i}")], "appears twice"),
    ([Rule("q", "qkv", part=(0, 3)), Rule("k", "qkv", part=(1, 3))], "not 0..n-1 of n"),
    ([Rule("q", "qkv", part=(0, 2)), Rule("k", "qkv", part=(1, 3))], "not 0..n-1 of n"),
])
def test_a_bad_table_fails_when_it_is_built(rules, message):
    with pytest.raises(ValueError, match=message):
        RenameTable(rules)
