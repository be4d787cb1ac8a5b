"""Other libraries' checkpoints: timm/DeiT, Hugging Face transformers, torchvision, ViT-pytorch.

Real-library fixtures (tests/data/hf_*, torchvision_*) were written by transformers 5.23 and
torchvision 0.28 themselves (fixtures/make_peer_fixtures.py); the other checkpoints are built
here from tiny vitzoo models in each library's exact on-disk layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import vitzoo
from vitzoo import CheckpointError, CheckpointMismatchError, build_model, load_checkpoint
from vitzoo.adapters import detect_format, hf_transformers, timm, torchvision, vit_pytorch

from conftest import random_weights, tiny_cfg

DATA = Path(__file__).parent / "data"


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


# -- the real libraries' files --------------------------------------------------------------------
@pytest.mark.parametrize("name, cls, eps, gelu", [
    ("hf_vit_tiny", "VisionTransformer", 1e-12, "none"),
    ("hf_deit_tiny", "DistilledVisionTransformer", 1e-12, "none"),
    ("hf_vitmodel_tiny", "VisionTransformer", 1e-6, "tanh"),
])
def test_transformers_directories_reproduce_transformers_outputs(name, cls, eps, gelu):
    ref = load_file(str(DATA / name / "reference.safetensors"))
    model = vitzoo.load_model(DATA / name)
    assert type(model).__name__ == cls
    assert model.blocks[0].norm1.eps == eps and model.norm.eps == eps  # from config.json
    assert model.blocks[0].mlp.act.approximate == gelu
    torch.testing.assert_close(_logits(model, ref["input"]), ref["output"], atol=1e-6, rtol=0)


def test_default_transformers_config_gives_eps_1e12_and_exact_gelu():
    config = json.loads((DATA / "hf_vit_tiny" / "config.json").read_text())
    assert config["layer_norm_eps"] == 1e-12 and config["hidden_act"] == "gelu"
    model = vitzoo.load_model(DATA / "hf_vit_tiny")
    assert model.cfg.norm_eps == 1e-12 and model.cfg.gelu_approximate == "none"
    assert model.pretrained_cfg["label_names"] == [f"LABEL_{i}" for i in range(5)]


def test_transformers_5_in_memory_names_load_too():
    ref = load_file(str(DATA / "hf_vit_tiny" / "reference.safetensors"))
    memory = load_file(str(DATA / "hf_vit_tiny" / "in_memory_state_dict.safetensors"))
    assert any(".layers.0.attention.q_proj." in k for k in memory)
    model = vitzoo.load_model(DATA / "hf_vit_tiny")
    fresh = build_model(model.cfg)
    report = load_checkpoint(fresh, memory)
    assert report.ok and report.source_format == "hf_transformers"
    torch.testing.assert_close(_logits(fresh, ref["input"]), ref["output"], atol=1e-6, rtol=0)


def _torchvision_model():
    return build_model(tiny_cfg(num_classes=5)).eval()


def test_torchvision_file_reproduces_torchvisions_logits():
    ref = load_file(str(DATA / "torchvision_vit_tiny_ref.safetensors"))
    model = _torchvision_model()
    report = load_checkpoint(model, DATA / "torchvision_vit_tiny.pth")
    assert report.ok and report.source_format == "torchvision"
    torch.testing.assert_close(_logits(model, ref["input"]), ref["output"], atol=1e-6, rtol=0)


def test_torchvision_legacy_mlp_names_load(tmp_path):
    state = torch.load(DATA / "torchvision_vit_tiny.pth", weights_only=True)
    legacy = {k.replace("mlp.0.", "mlp.linear_1.").replace("mlp.3.", "mlp.linear_2."): v
              for k, v in state.items()}
    assert any("linear_1" in k for k in legacy)
    model = _torchvision_model()
    assert load_checkpoint(model, legacy).ok
    ref = load_file(str(DATA / "torchvision_vit_tiny_ref.safetensors"))
    torch.testing.assert_close(_logits(model, ref["input"]), ref["output"], atol=1e-6, rtol=0)


# -- every layout built from a vitzoo model -------------------------------------------------------
def _round_trip(tmp_path, model, state, filename, wrap=None):
    payload = {wrap: state} if wrap else state
    path = tmp_path / filename
    if filename.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in payload.items()}, str(path))
    else:
        torch.save(payload, path)
    fresh = build_model(model.cfg)
    report = load_checkpoint(fresh, path)
    x = torch.randn(2, 3, *model.cfg.img_size)
    torch.testing.assert_close(_logits(fresh, x), _logits(model, x), atol=1e-6, rtol=0)
    return report


@pytest.mark.parametrize("fmt, overrides, filename, wrap", [
    ("hf_transformers", dict(), "model.safetensors", None),
    ("hf_transformers", dict(distilled=True), "pytorch_model.bin", None),
    ("torchvision", dict(), "vit.pth", None),
    ("torchvision", dict(representation_size=24), "vit.pth", None),
    ("vit_pytorch", dict(), "ViT-B_16_checkpoint.bin", None),
    ("vit_pytorch", dict(backbone_layers=(1, 1), backbone_width=32, patch_size=1),
     "R50_checkpoint.bin", None),
    ("timm", dict(distilled=True), "deit_tiny_distilled.pth", "model"),
    ("timm", dict(init_values=0.1), "checkpoint.pth", "state_dict_ema"),
])
def test_each_layout_loads_with_identical_logits(tmp_path, fmt, overrides, filename, wrap):
    model = random_weights(build_model(tiny_cfg(**overrides))).eval()
    state = model.state_dict()
    if fmt == "hf_transformers":
        state, unmatched = hf_transformers.from_vitzoo(state, distilled=model.cfg.distilled)
    elif fmt == "torchvision":
        state, unmatched = torchvision.from_vitzoo(state)
    elif fmt == "vit_pytorch":
        state, unmatched = vit_pytorch.from_vitzoo(state)
    else:
        state, unmatched = dict(state), []
    assert unmatched == []
    assert detect_format(state) == fmt
    report = _round_trip(tmp_path, model, state, filename, wrap)
    assert report.source_format == fmt


def test_deit_iii_layer_scale_names(tmp_path):
    model = random_weights(build_model(tiny_cfg(init_values=0.1))).eval()
    state = {k.replace("ls1.gamma", "gamma_1").replace("ls2.gamma", "gamma_2"): v
             for k, v in model.state_dict().items()}
    assert "blocks.0.gamma_1" in state
    _round_trip(tmp_path, model, state, "deit3.pth", "model")


def _covered(table, state) -> set[str]:
    used = set()
    for key in state:
        found = table.match(key)
        if found is not None:
            used.add(found[0].source)
    return used


def test_every_rename_rule_is_covered_key_by_key():
    models = [random_weights(build_model(tiny_cfg(**kw))) for kw in (
        dict(representation_size=24), dict(distilled=True),
        dict(backbone_layers=(1, 1), backbone_width=32, patch_size=1))]
    # torchvision: current and legacy names
    tv_used = set()
    for model in models[:1]:
        state, _ = torchvision.from_vitzoo(model.state_dict())
        tv_used |= _covered(torchvision.RENAMES, state)
        legacy = {k.replace("mlp.0.", "mlp.linear_1.").replace("mlp.3.", "mlp.linear_2."): v
                  for k, v in state.items()}
        tv_used |= _covered(torchvision.RENAMES, legacy)
    assert tv_used == {r[0] for r in torchvision.RENAMES.rules}
    # ViT-pytorch: plain and hybrid
    vp_used = set()
    for model in (models[0], models[2]):
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("pre_logits")}
        converted, unmatched = vit_pytorch.from_vitzoo(state)
        assert unmatched == []
        vp_used |= _covered(vit_pytorch.RENAMES, converted)
        back, unmatched = vit_pytorch.to_vitzoo(converted)
        assert unmatched == [] and set(back) == set(state)
        for key in state:
            assert torch.equal(back[key], state[key]), key
    assert vp_used == {r[0] for r in vit_pytorch.RENAMES.rules}
    # transformers: on-disk names for ViT / DeiT, the 5.x in-memory names, and ViTModel's
    hf_used: dict[str, set[str]] = {p: set() for p in hf_transformers.TABLES}
    for model in models[:2]:
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("pre_logits")}
        disk, _ = hf_transformers.from_vitzoo(state, distilled=model.cfg.distilled)
        prefix = "deit." if model.cfg.distilled else "vit."
        hf_used[prefix] |= _covered(hf_transformers.TABLES[prefix], disk)
    memory = load_file(str(DATA / "hf_vit_tiny" / "in_memory_state_dict.safetensors"))
    hf_used["vit."] |= _covered(hf_transformers.TABLES["vit."], memory)
    deit_memory = {k.replace("vit.", "deit.", 1): v for k, v in memory.items()
                   if k.startswith("vit.")}
    hf_used["deit."] |= _covered(hf_transformers.TABLES["deit."], deit_memory)
    bare = {k[len("vit."):]: v for k, v in {**memory, **hf_transformers.from_vitzoo(
        models[0].state_dict(), distilled=False)[0]}.items() if k.startswith("vit.")}
    bare["pooler.dense.weight"] = bare["pooler.dense.bias"] = torch.zeros(1)
    hf_used[""] |= _covered(hf_transformers.TABLES[""], bare)
    for prefix, table in hf_transformers.TABLES.items():
        expected = {r[0] for r in table.rules}
        if prefix == "vit.":  # ViT has no distillation token
            expected.discard("vit.embeddings.distillation_token")
        if prefix == "":
            expected -= {"embeddings.distillation_token"}
        assert hf_used[prefix] == expected, (prefix, expected ^ hf_used[prefix])
    assert _covered(timm.RENAMES, {"blocks.0.gamma_1": 0, "blocks.0.gamma_2": 0}) == {
        r[0] for r in timm.RENAMES.rules}


# -- in_chans -------------------------------------------------------------------------------------
def test_rgb_weights_into_one_channel_sum_the_kernels():
    rgb = random_weights(build_model(tiny_cfg())).eval()
    grey = build_model(tiny_cfg(in_chans=1)).eval()
    report = load_checkpoint(grey, rgb.state_dict())
    assert report.reshaped == {"patch_embed.proj.weight": "3 -> 1 input channels, summed"}
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(_logits(grey, x), _logits(rgb, x.repeat(1, 3, 1, 1)),
                               atol=1e-5, rtol=0)


def test_rgb_weights_into_more_channels_repeat_and_rescale():
    rgb = random_weights(build_model(tiny_cfg())).eval()
    four = build_model(tiny_cfg(in_chans=4)).eval()
    report = load_checkpoint(four, rgb.state_dict())
    assert "repeated and scaled by 3/4" in report.reshaped["patch_embed.proj.weight"]
    w = rgb.patch_embed.proj.weight
    torch.testing.assert_close(four.patch_embed.proj.weight,
                               torch.cat([w, w[:, :1]], dim=1) * 0.75, atol=0, rtol=0)
    six = build_model(tiny_cfg(in_chans=6)).eval()
    load_checkpoint(six, rgb.state_dict())
    const = torch.full((1, 6, 32, 32), 0.3)  # with 2 x RGB a constant image keeps its logits
    torch.testing.assert_close(_logits(six, const), _logits(rgb, const[:, :3]), atol=1e-5,
                               rtol=0)


def test_hybrid_stem_adapts_its_first_conv():
    rgb = random_weights(build_model(tiny_cfg(backbone_layers=(1,), backbone_width=32,
                                              patch_size=2)))
    grey = build_model(tiny_cfg(backbone_layers=(1,), backbone_width=32, patch_size=2,
                                in_chans=1))
    report = load_checkpoint(grey, rgb.state_dict())
    assert list(report.reshaped) == ["patch_embed.backbone.stem.conv.weight"]
    assert torch.equal(grey.patch_embed.backbone.stem.conv.weight,
                       rgb.patch_embed.backbone.stem.conv.weight.sum(1, keepdim=True))


# -- explaining a mismatch ------------------------------------------------------------------------
def test_a_deit_checkpoint_in_a_plain_vit_is_explained(tmp_path):
    with torch.device("meta"):
        deit = vitzoo.create_model("deit_tiny_distilled_patch16_224")
        vit = vitzoo.create_model("vit_tiny_patch16_224")
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(vit, deit.state_dict())
    message = str(err.value)
    assert "this is a DeiT checkpoint with a distillation token; the model has none" in message
    assert "architectures that fit the checkpoint: deit_tiny_distilled_patch16_224" in message
    assert "in the checkpoint but not in the model (3): dist_token, head_dist.weight" in message
    assert "Traceback" not in message and "size mismatch" not in message


def test_size_and_class_differences_are_explained():
    with torch.device("meta"):
        b16 = vitzoo.create_model("vit_base_patch16_384", num_classes=1000)
        s16 = vitzoo.create_model("vit_small_patch16_224", num_classes=10)
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(s16, b16.state_dict())
    message = str(err.value)
    assert "the checkpoint is 768 wide with 12 blocks, the model 384 wide with 12 blocks" in message
    assert "covers 576 patches, the model's 196" in message
    assert "head has 1000 classes, the model's 10: pass num_classes=1000" in message
    assert "architectures that fit the checkpoint: vit_base_patch16_384, deit_base_patch16_384" \
        in message


def test_unknown_layouts_name_the_formats():
    model = build_model(tiny_cfg())
    with pytest.raises(CheckpointError, match="cannot tell which library wrote this state dict"):
        load_checkpoint(model, {"backbone.layer1.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="source_format='keras'"):
        load_checkpoint(model, model.state_dict(), source_format="keras")


# -- export to transformers -----------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [dict(), dict(distilled=True, gelu_approximate="tanh")])
def test_export_to_a_transformers_directory_round_trips(tmp_path, overrides):
    model = random_weights(build_model(tiny_cfg(**overrides))).eval()
    src = vitzoo.save_model(model, tmp_path / "m.safetensors")
    out = vitzoo.convert_checkpoint(src, tmp_path / "hf", target_format="hf")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == ("deit" if model.cfg.distilled else "vit")
    assert config["layer_norm_eps"] == 1e-6
    assert config["hidden_act"] == ("gelu_pytorch_tanh" if "gelu_approximate" in overrides
                                    else "gelu")
    keys = set(load_file(str(out / "model.safetensors")))
    prefix = "deit." if model.cfg.distilled else "vit."
    assert f"{prefix}encoder.layer.1.attention.attention.query.weight" in keys
    loaded = vitzoo.load_model(out)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(_logits(loaded, x), _logits(model, x), atol=1e-6, rtol=0)


def test_export_refuses_what_transformers_cannot_express(tmp_path):
    model = build_model(tiny_cfg(global_pool="avg", class_token=False))
    src = vitzoo.save_model(model, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="no transformers equivalent: .*global_pool='avg'"):
        vitzoo.convert_checkpoint(src, tmp_path / "hf", target_format="hf")
    assert not (tmp_path / "hf" / "model.safetensors").exists()


@pytest.mark.parametrize("fmt", ["torchvision", "vit_pytorch", "timm"])
def test_load_model_recognises_a_registered_architecture_in_a_plain_state_dict(tmp_path, fmt):
    model = random_weights(vitzoo.create_model("vit_tiny_patch16_224", num_classes=7),
                           scale=0.05).eval()
    state = model.state_dict()
    if fmt == "torchvision":
        state, _ = torchvision.from_vitzoo(state)
    elif fmt == "vit_pytorch":
        state, _ = vit_pytorch.from_vitzoo(state)
    torch.save(state, tmp_path / "weights.pth")
    loaded = vitzoo.load_model(tmp_path / "weights.pth")
    assert loaded.pretrained_cfg["architecture"] == "vit_tiny_patch16_224"
    assert loaded.num_classes == 7
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(_logits(loaded, x), _logits(model, x), atol=1e-6, rtol=0)
