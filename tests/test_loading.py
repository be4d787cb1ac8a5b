"""The one build-and-load path (vitzoo.loading.load_state) and the pretrained-cfg schema."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import vitzoo
from vitzoo import CheckpointMismatchError, VerificationError
from vitzoo.adapters import jax_npz as J
from vitzoo.loading import LoadReport, load_state
from vitzoo.pretrained import PretrainedCfg, build_pretrained_cfg

from conftest import jax_model, random_weights, tiny_cfg


@pytest.fixture
def init_calls(monkeypatch):
    """Every call of a torch.nn.init initialiser, by name and tensor shape."""
    calls: list[tuple[str, tuple[int, ...]]] = []
    for name in ("trunc_normal_", "normal_", "uniform_", "kaiming_uniform_", "xavier_uniform_",
                 "zeros_", "ones_", "constant_"):
        real = getattr(torch.nn.init, name)

        def counting(tensor, *args, _real=real, _name=name, **kwargs):
            calls.append((_name, tuple(tensor.shape)))
            return _real(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.nn.init, name, counting)
    return calls


def test_checkpoint_path_builds_without_initialising_what_it_loads(tmp_path, init_calls):
    source = random_weights(vitzoo.create_model("vit_ti16", num_classes=3, depth=1))
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    init_calls.clear()
    model = vitzoo.create_model("vit_ti16", num_classes=3, depth=1,
                                checkpoint_path=tmp_path / "w.safetensors")
    assert init_calls == []
    assert model.training  # as create_model without a checkpoint
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert model.pretrained_cfg["file"] == str(tmp_path / "w.safetensors")


def test_loading_into_a_model_keeps_its_parameters_and_their_dtype():
    model = vitzoo.build_model(tiny_cfg()).double()
    params = {name: p for name, p in model.named_parameters()}
    other = random_weights(vitzoo.build_model(tiny_cfg()))
    returned, report = load_state(other.state_dict(), model=model)
    assert returned is model and report.ok
    for name, p in model.named_parameters():
        assert p is params[name] and p.dtype == torch.float64
        assert torch.equal(p, other.state_dict()[name].double())


def test_a_built_model_initialises_exactly_the_parts_it_did_not_load(init_calls):
    native = tiny_cfg(weight_init="timm")
    state = random_weights(vitzoo.build_model(native)).state_dict()
    init_calls.clear()
    model, report = load_state(state, cfg=native.replace(num_classes=9), native=native)
    assert init_calls == [("trunc_normal_", (9, 32)), ("zeros_", (9,))]
    assert report.dropped == ["head.weight", "head.bias"]
    assert model.load_report is report and not model.training


def test_non_strict_building_initialises_the_missing_keys_instead_of_leaving_garbage():
    cfg = tiny_cfg(weight_init="jax")
    state = random_weights(vitzoo.build_model(cfg)).state_dict()
    del state["head.weight"], state["head.bias"]
    model, report = load_state(state, cfg=cfg, strict=False)
    assert report.missing == ["head.weight", "head.bias"]
    assert torch.all(model.head.weight == 0) and torch.all(model.head.bias == 0)


def test_a_self_describing_file_that_contradicts_itself_is_called_damaged():
    cfg = tiny_cfg()
    state = vitzoo.build_model(tiny_cfg(depth=1)).state_dict()
    with pytest.raises(CheckpointMismatchError, match="does not fit the model it describes"):
        load_state(state, cfg=cfg, native=cfg, name="m.safetensors")


def test_every_loader_reports_through_the_same_report(tmp_path):
    model = jax_model()
    np.savez(tmp_path / "m.npz", **J.from_vitzoo({k: v.numpy() for k, v in
                                                   model.state_dict().items()}, num_heads=4))
    loaded = vitzoo.load_model(tmp_path / "m.npz", num_classes=2)
    assert isinstance(loaded.load_report, LoadReport)
    assert loaded.load_report.source_format == "jax_npz"
    assert loaded.load_report.dropped == ["head.bias", "head.weight"]


# -- convert --verify: a failure replaces nothing -------------------------------------------------
@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_a_failed_verification_leaves_an_existing_output_as_it_was(
        tmp_path, verification_off_by_a_little, suffix):
    model = jax_model()
    src = tmp_path / "m.npz"
    np.savez(src, **J.from_vitzoo({k: v.numpy() for k, v in model.state_dict().items()},
                                  num_heads=4))
    if suffix == ".npz":
        src = vitzoo.convert_checkpoint(src, tmp_path / "m.safetensors")
    dst = tmp_path / f"out{suffix}"
    dst.write_bytes(b"the previous conversion")
    with pytest.raises(VerificationError):
        vitzoo.convert_checkpoint(src, dst, verify=True)
    assert dst.read_bytes() == b"the previous conversion"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["m.npz", "m.safetensors", dst.name] if suffix == ".npz" else ["m.npz", dst.name])


# -- the pretrained cfg ---------------------------------------------------------------------------
SCHEMA = {f.name for f in dataclasses.fields(PretrainedCfg)}


def test_every_way_a_model_comes_to_be_gives_the_same_schema(tmp_path):
    by_name = vitzoo.create_model("vit_ti16", img_size=32, patch_size=8, depth=1)
    saved = vitzoo.save_model(random_weights(vitzoo.build_model(tiny_cfg())),
                              tmp_path / "m.safetensors")
    np.savez(tmp_path / "g.npz", **J.from_vitzoo(
        {k: v.numpy() for k, v in jax_model().state_dict().items()}, num_heads=4))
    for model in (by_name, vitzoo.load_model(saved), vitzoo.load_model(tmp_path / "g.npz")):
        assert set(model.pretrained_cfg) == SCHEMA
        assert model.pretrained_cfg["input_size"] == (model.cfg.in_chans, *model.cfg.img_size)
        assert model.pretrained_cfg["num_classes"] == model.cfg.num_classes
    google = vitzoo.load_model(tmp_path / "g.npz").pretrained_cfg
    assert google["origin"] == "jax" and google["mean"] == (0.5, 0.5, 0.5)
    assert google["interpolation"] == "bilinear" and google["crop_pct"] == 1.0


def test_the_pretrained_cfg_describes_the_model_it_belongs_to():
    hybrid = build_pretrained_cfg(tiny_cfg(backbone_layers=(1,), patch_size=1))
    assert hybrid.first_conv == "patch_embed.backbone.stem.conv"
    stem = build_pretrained_cfg(tiny_cfg(backbone_layers=(), patch_size=1))
    assert stem.first_conv == "patch_embed.backbone.conv"
    deit = build_pretrained_cfg(tiny_cfg(distilled=True), arch="x")
    assert deit.classifier == ("head", "head_dist") and deit.architecture == "x"
    stale = build_pretrained_cfg(tiny_cfg(num_classes=3), stored={"label_names": ["a", "b"]})
    assert stale.label_names is None  # names of another head are not kept
    named = build_pretrained_cfg(tiny_cfg(num_classes=2), label_names=["cat", "dog"])
    assert named.to_dict()["label_names"] == ["cat", "dog"]


def test_stored_pretrained_cfgs_are_read_leniently_but_typed():
    cfg = PretrainedCfg.from_dict({"mean": [0.1, 0.2, 0.3], "input_size": [1, 8, 8],
                                   "from_the_future": 1})
    assert cfg.mean == (0.1, 0.2, 0.3) and cfg.input_size == (1, 8, 8)
    for bad in ({"mean": "0.5"}, {"num_classes": "10"}, {"crop_pct": True}, {"tag": 3}, [1, 2]):
        with pytest.raises(ValueError):
            PretrainedCfg.from_dict(bad)


def test_a_file_with_a_broken_pretrained_cfg_is_a_checkpoint_error(tmp_path):
    model = random_weights(vitzoo.build_model(tiny_cfg()))
    model.pretrained_cfg = {"mean": "grey"}
    path = vitzoo.save_model(model, tmp_path / "m.safetensors")
    with pytest.raises(vitzoo.CheckpointError, match="pretrained_cfg"):
        vitzoo.load_model(path)


def test_checkpoint_path_builds_a_user_builder_with_its_own_function(tmp_path, clean_registry):
    class Custom(vitzoo.VisionTransformer):
        pass

    @vitzoo.register_model
    def vit_custom_patch8_32(**overrides):
        return Custom(tiny_cfg(**overrides))

    source = random_weights(vitzoo.build_model(tiny_cfg()))
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    model = vitzoo.create_model("vit_custom_patch8_32", checkpoint_path=tmp_path / "w.safetensors")
    assert type(model) is Custom
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize("change", [{"depth": 1000}, {"embed_dim": 4096, "num_heads": 64},
                                    {"reg_tokens": 4}, {"mlp_dim": 10**6}])
def test_a_config_that_disagrees_with_its_tensors_is_refused_before_anything_is_built(
        tmp_path, change, monkeypatch):
    """A damaged or hostile self-describing file cannot make vitzoo build a model of any size:
    the tensors are compared with the config first."""
    path = vitzoo.io.save_model(vitzoo.build_model(tiny_cfg()), tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    config = {**json.loads(metadata["vitzoo_config"]), **change}
    save_file(tensors, str(path), metadata={**metadata, "vitzoo_config": json.dumps(config)})
    monkeypatch.setattr(vitzoo.loading, "build_model", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(CheckpointMismatchError, match="disagree with its own config"):
        vitzoo.load_model(path)
