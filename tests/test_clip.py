"""CLIP image towers: OpenAI's TorchScript releases and open_clip's files reproduce the original
code's image embeddings.

The fixtures in tests/data/clip/ come from the original code (openai/CLIP's ``clip/model.py``,
open-clip-torch 3.3.0, timm 1.0.31; see tests/fixtures/make_clip_fixtures.py). Measured max
differences (float32, CPU) against the original outputs, embedding / pre-projection pooled
output: OpenAI archive 4.8e-7 / 3.0e-7, open_clip GELU 2.4e-7 / 1.2e-7, open_clip QuickGELU
1.8e-7 / 2.4e-7; vitzoo against timm's conversion (of the open_clip QuickGELU tower, and of
the OpenAI archive): 0, bit-exact.
"""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import vitzoo
from vitzoo import CheckpointError, io
from vitzoo._torchscript import read_archive
from vitzoo.adapters import open_clip as A
from vitzoo.pretrained.entry import CLIP_MEAN, CLIP_STD

DATA = Path(__file__).parent / "data" / "clip"
ARCHIVE = DATA / "openai_tiny.pt"
TOL = 2e-6  # measured: 4.8e-7 at most (encode_image), 3.0e-7 (pre-projection)


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(str(DATA / "reference.safetensors"))


def _outputs(model, x) -> tuple[torch.Tensor, torch.Tensor]:
    """The embedding and the pooled output before the projection (``ln_post(cls)``)."""
    with torch.no_grad():
        return model(x), model.forward_head(model.forward_features(x), pre_logits=True)


def _assert_reproduces(model, reference, name: str) -> None:
    out, pooled = _outputs(model, reference["input"])
    torch.testing.assert_close(out, reference[f"{name}.image_embeds"], atol=TOL, rtol=0)
    torch.testing.assert_close(pooled, reference[f"{name}.pre_proj"], atol=TOL, rtol=0)


def _tiny_open_clip_cfg(act_layer: str) -> vitzoo.ViTConfig:
    return vitzoo.ViTConfig(img_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2,
                            mlp_dim=16, pre_norm=True, patch_bias=False, norm_eps=1e-5,
                            act_layer=act_layer, num_classes=8)


# -- OpenAI ---------------------------------------------------------------------------------------
def test_torch_load_refuses_torchscript_archives_with_weights_only():
    """Why vitzoo reads the archive itself: torch 2.13 will not, short of running its code."""
    with pytest.raises(RuntimeError, match="TorchScript"), pytest.warns(UserWarning):
        torch.load(ARCHIVE, weights_only=True)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_archive_reads_as_its_state_dict():
    """Every parameter and buffer of the archive, named and typed as ScriptModule.state_dict()
    (checked against torch.jit.load here, which vitzoo itself never calls)."""
    state = read_archive(ARCHIVE)
    expected = torch.jit.load(str(ARCHIVE), map_location="cpu").state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
    assert state["visual.conv1.weight"].dtype == torch.float16  # convert_weights' fp16
    assert int(state["input_resolution"]) == 8


def test_openai_torchscript_release_reproduces_encode_image(reference):
    model = vitzoo.load_model(ARCHIVE)
    cfg = model.cfg
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_hidden_dim) == (64, 2, 1, 256)
    assert (cfg.img_size, cfg.patch_size, cfg.num_classes) == ((8, 8), (4, 4), 16)
    assert cfg.act_layer == "quick_gelu" and cfg.norm_eps == 1e-5
    assert cfg.pre_norm and not cfg.patch_bias and cfg.head_bias
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp16 upcast
    assert torch.count_nonzero(model.head.bias) == 0
    _assert_reproduces(model, reference, "openai")
    pcfg = model.pretrained_cfg
    assert (pcfg["mean"], pcfg["std"]) == (CLIP_MEAN, CLIP_STD)
    assert (pcfg["interpolation"], pcfg["crop_pct"], pcfg["crop_mode"]) == ("bicubic", 1.0,
                                                                            "center")


def test_quick_gelu_is_what_reproduces_openai(reference):
    """The check above can fail: erf GELU on OpenAI's weights misses by far more than 1e-5."""
    out, _ = _outputs(vitzoo.load_model(ARCHIVE, act_layer="gelu"), reference["input"])
    assert (out - reference["openai.image_embeds"]).abs().max() > 1e-3


def test_the_text_tower_is_ignored_with_a_note():
    report = vitzoo.load_model(ARCHIVE).load_report
    assert report.ok
    assert "text tower (21 keys) ignored" in report.notes
    assert "text tower (21 keys) ignored" in report.describe()
    assert {"token_embedding.weight", "logit_scale", "input_resolution",
            "transformer.resblocks.0.attn.in_proj_weight"} <= set(report.dropped)
    assert not any(k.startswith("visual.") for k in report.dropped)
    # an OpenAI file is known to be QuickGELU: no assumption to note
    assert not any("assumed" in note for note in report.notes)


def test_openai_plain_state_dict_release_form_loads(tmp_path, reference):
    """clip.load's fallback form: torch.save of the fp16 state dict, with the extra top-level
    keys. Written here from the archive's tensors (dtypes as saved) to keep tests/data small."""
    path = tmp_path / "ViT-tiny.pt"
    torch.save(read_archive(ARCHIVE), path)
    assert "vocab_size" in torch.load(path, weights_only=True)
    model = vitzoo.load_model(path)
    assert model.cfg.act_layer == "quick_gelu"
    _assert_reproduces(model, reference, "openai")
    assert "text tower (21 keys) ignored" in model.load_report.describe()


def test_load_checkpoint_into_a_built_model(reference):
    model = vitzoo.VisionTransformer(vitzoo.ViTConfig(
        img_size=8, patch_size=4, embed_dim=64, depth=2, num_heads=1, mlp_dim=256,
        pre_norm=True, patch_bias=False, norm_eps=1e-5, act_layer="quick_gelu", num_classes=16))
    report = vitzoo.load_checkpoint(model, ARCHIVE)
    assert report.ok and report.source_format == "open_clip"
    assert "text tower (21 keys) ignored" in report.notes
    _assert_reproduces(model.eval(), reference, "openai")


def test_convert_then_load_is_the_same_model(tmp_path, reference):
    for source, name in ((ARCHIVE, "openai"), (DATA / "open_clip_gelu", "open_clip_gelu")):
        dst = vitzoo.convert_checkpoint(source, tmp_path / f"{name}.safetensors")
        assert io.detect_format(dst) == "vitzoo"
        model = vitzoo.load_model(dst)
        assert model.cfg == vitzoo.load_model(source).cfg
        _assert_reproduces(model, reference, name)


# -- refusing what is not data --------------------------------------------------------------------
def _with_data_pkl(tmp_path: Path, data: bytes) -> Path:
    """The fixture archive with its data.pkl replaced."""
    out = tmp_path / "edited.pt"
    with zipfile.ZipFile(ARCHIVE) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            payload = data if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info, payload)
    return out


def test_archive_that_calls_a_function_is_refused(tmp_path):
    marker = tmp_path / "ran"
    # GLOBAL os.system, then REDUCE with a command: what a malicious data.pkl would do
    evil = (b"\x80\x02cos\nsystem\nq\x00X" + len(f"touch {marker}").to_bytes(4, "little")
            + f"touch {marker}".encode() + b"\x85R.")
    path = _with_data_pkl(tmp_path, evil)
    with pytest.raises(CheckpointError, match=r"refused.*os\.system"):
        vitzoo.load_model(path)
    with pytest.raises(CheckpointError, match="refused"):
        io.load_state_dict(path)
    assert not marker.exists()


def test_archive_with_objects_other_than_module_states_is_refused(tmp_path):
    # a module whose state holds a builtins.eval reference
    data = pickle.dumps(None, protocol=2)[:2] + (
        b"c__torch__.m\nM\n)\x81}X\x01\x00\x00\x00acbuiltins\neval\nsb.")
    with pytest.raises(CheckpointError, match=r"builtins\.eval"):
        read_archive(_with_data_pkl(tmp_path, data))


def test_truncated_archive_raises_checkpoint_error(tmp_path):
    path = tmp_path / "truncated.pt"
    path.write_bytes(ARCHIVE.read_bytes()[: ARCHIVE.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        vitzoo.load_model(path)
    with pytest.raises(CheckpointError):
        read_archive(path)


def test_storage_of_the_wrong_size_is_damage(tmp_path):
    out = tmp_path / "short.pt"
    with zipfile.ZipFile(ARCHIVE) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            payload = src.read(info)
            dst.writestr(info, payload[:-2] if info.filename.endswith("/data/0") else payload)
    with pytest.raises(CheckpointError, match="damaged"):
        read_archive(out)


# -- open_clip ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "act_layer", "weights"), [
    ("open_clip_gelu", "gelu", "open_clip_model.safetensors"),
    ("open_clip_quickgelu", "quick_gelu", "open_clip_pytorch_model.bin"),
])
def test_open_clip_hub_directory_reproduces_encode_image(reference, name, act_layer, weights):
    assert (DATA / name / weights).is_file()
    model = vitzoo.load_model(DATA / name)
    assert model.cfg == _tiny_open_clip_cfg(act_layer).replace(
        pos_embed_resample=model.cfg.pos_embed_resample)
    _assert_reproduces(model, reference, name)
    assert model.load_report.source_format == "open_clip"
    assert model.load_report.notes == ["text tower (18 keys) ignored"]


def test_open_clip_preprocess_cfg_is_read():
    gelu = vitzoo.load_model(DATA / "open_clip_gelu").pretrained_cfg
    assert (gelu["mean"], gelu["std"]) == ((0.5,) * 3, (0.5,) * 3)
    assert (gelu["crop_mode"], gelu["crop_pct"], gelu["input_size"]) == ("squash", 1.0,
                                                                         (3, 8, 8))
    quick = vitzoo.load_model(DATA / "open_clip_quickgelu").pretrained_cfg
    assert (quick["mean"], quick["std"], quick["crop_mode"]) == (CLIP_MEAN, CLIP_STD, "center")


def test_hub_directory_prefers_safetensors_to_the_pickle(tmp_path, reference):
    hub = tmp_path / "hub"
    shutil.copytree(DATA / "open_clip_quickgelu", hub)
    state = torch.load(hub / "open_clip_pytorch_model.bin", weights_only=True)
    save_file(state, str(hub / "open_clip_model.safetensors"))
    (hub / "open_clip_pytorch_model.bin").write_bytes(b"\x80\x02damaged")
    (hub / "config.json").write_text(json.dumps({"model_type": "clip"}))  # transformers' own
    _assert_reproduces(vitzoo.load_model(hub), reference, "open_clip_quickgelu")


def test_open_clip_training_checkpoint_loads(reference):
    """``{"epoch", "name", "state_dict": {"module.visual...": ...}, "optimizer"}``: the file
    says neither the activation nor the head width, so the report says what was assumed."""
    path = DATA / "open_clip_gelu_epoch_1.pt"
    assumed = vitzoo.load_model(path)
    assert assumed.cfg.act_layer == "quick_gelu"
    assert any("QuickGELU and 64-wide heads assumed" in n for n in assumed.load_report.notes)
    model = vitzoo.load_model(path, act_layer="gelu", num_heads=2)
    _assert_reproduces(model, reference, "open_clip_gelu")
    assert "text tower (18 keys) ignored" in model.load_report.describe()


def _edited_hub(tmp_path: Path, **vision: object) -> Path:
    hub = tmp_path / "hub"
    shutil.copytree(DATA / "open_clip_gelu", hub)
    config = json.loads((hub / A.CONFIG_FILE).read_text())
    config["model_cfg"]["vision_cfg"].update(vision)
    (hub / A.CONFIG_FILE).write_text(json.dumps(config))
    return hub


@pytest.mark.parametrize(("option", "message"), [
    ({"attentional_pool": True}, "attentional pooler"),
    ({"no_ln_pre": True}, "no ln_pre"),
    ({"final_ln_after_pool": True}, "ln_post after pooling"),
    ({"pool_type": "avg"}, "pool_type='avg'"),
    ({"layers": [3, 4, 6, 3]}, "ResNet"),
    ({"timm_model_name": "vit_tiny_patch16_224", "timm_proj": "mlp"}, "timm_proj='mlp'"),
])
def test_unsupported_open_clip_vision_options_are_refused(tmp_path, option, message):
    with pytest.raises(CheckpointError, match=message):
        vitzoo.load_model(_edited_hub(tmp_path, **option))


def test_non_vit_timm_trunk_is_refused(tmp_path):
    hub = _edited_hub(tmp_path, timm_model_name="convnext_tiny", timm_proj="none")
    with pytest.raises(CheckpointError, match="convnext_tiny.*not a ViT vitzoo knows"):
        vitzoo.load_model(hub)


# -- open_clip towers that wrap a timm trunk ------------------------------------------------------
def _trunk_state(model, *, text: bool = True) -> dict[str, torch.Tensor]:
    """``model``'s weights as open_clip's TimmModel holds them (timm_proj="linear", no bias)."""
    state = {f"visual.trunk.{k}": v for k, v in model.state_dict().items()
             if not k.startswith("head.")}
    state["visual.head.proj.weight"] = model.head.weight.detach().clone()
    if text:
        state.update({"text_projection": torch.randn(8, 8), "logit_scale": torch.tensor(1.0)})
    return state


def test_timm_trunk_loads_through_its_timm_keys(images):
    cfg = vitzoo.ViTConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4,
                           num_classes=8)
    source = vitzoo.VisionTransformer(cfg).eval()
    with torch.no_grad():
        source.head.bias.zero_()  # the projection has no bias
    model = vitzoo.VisionTransformer(cfg)
    report = vitzoo.load_checkpoint(model, _trunk_state(source))
    assert report.ok and report.notes == ["text tower (2 keys) ignored"]
    torch.testing.assert_close(model.eval()(images), source(images), atol=0, rtol=0)


def test_timm_trunk_hub_directory_builds_the_named_architecture(tmp_path, images, monkeypatch):
    cfg = vitzoo.ViTConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4,
                           num_classes=0, global_pool="map")
    source = vitzoo.VisionTransformer(cfg.replace(num_classes=8)).eval()
    with torch.no_grad():
        source.head.bias.zero_()
    monkeypatch.setattr(vitzoo.registry, "default_config",
                        lambda name: cfg if name == "vit_tiny_trunk" else None)
    hub = tmp_path / "hub"
    hub.mkdir()
    save_file(_trunk_state(source), str(hub / A.WEIGHT_FILES[0]))
    (hub / A.CONFIG_FILE).write_text(json.dumps({"model_cfg": {
        "embed_dim": 8, "vision_cfg": {"timm_model_name": "vit_tiny_trunk", "timm_pool": "map",
                                       "timm_proj": "linear", "image_size": 32}}}))
    model = vitzoo.load_model(hub)
    assert model.cfg.global_pool == "map" and model.cfg.num_classes == 8
    torch.testing.assert_close(model(images), source(images), atol=0, rtol=0)


# -- timm -----------------------------------------------------------------------------------------
def test_timm_conversion_loads_strictly_and_agrees(reference):
    """timm 1.0.31's checkpoint_filter_fn on the open_clip QuickGELU tower, into a timm
    VisionTransformer (pre_norm, eps 1e-5, quick_gelu, num_classes=E): vitzoo takes its state
    dict as it is and gives timm's outputs (bit-exact here) and the original's."""
    timm_ref = load_file(str(DATA / "timm_reference.safetensors"))
    model = vitzoo.VisionTransformer(_tiny_open_clip_cfg("quick_gelu")).eval()
    state = load_file(str(DATA / "timm_open_clip_quickgelu.safetensors"))
    model.load_state_dict(state, strict=True)
    out, pooled = _outputs(model, reference["input"])
    torch.testing.assert_close(out, timm_ref["timm_open_clip_quickgelu.output"], atol=TOL, rtol=0)
    torch.testing.assert_close(pooled, timm_ref["timm_open_clip_quickgelu.pre_logits"],
                               atol=TOL, rtol=0)
    _assert_reproduces(model, reference, "open_clip_quickgelu")
    # and vitzoo's reading of the OpenAI archive is timm's
    openai, openai_pooled = _outputs(vitzoo.load_model(ARCHIVE), reference["input"])
    torch.testing.assert_close(openai, timm_ref["timm_openai.output"], atol=TOL, rtol=0)
    torch.testing.assert_close(openai_pooled, timm_ref["timm_openai.pre_logits"], atol=TOL,
                               rtol=0)


# -- the released architectures ------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["vit_base_patch32_clip_quickgelu_224",
                                  "vit_base_patch16_clip_quickgelu_224",
                                  "vit_large_patch14_clip_quickgelu_224",
                                  "vit_large_patch14_clip_quickgelu_336"])
def test_openai_release_shapes_give_the_registered_quickgelu_architecture(arch):
    """What load_model reads off an OpenAI file of each release's shapes (on the meta device)
    is timm's ``*_quickgelu_*`` architecture with the projection as head."""
    cfg = vitzoo.registry.default_config(arch)
    with torch.device("meta"):
        state = vitzoo.VisionTransformer(cfg).state_dict()
    assert vitzoo.ViTConfig(**A.config_fields(state)) == cfg


# open_clip's model_configs/ViT-H-14-quickgelu.json and ViT-B-16-SigLIP.json (vision parts)
_H14 = {"embed_dim": 1024, "quick_gelu": True, "vision_cfg": {
    "image_size": 224, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14}}
_SIGLIP = {"embed_dim": 768, "init_logit_bias": -10, "custom_text": True, "vision_cfg": {
    "image_size": 224, "timm_model_name": "vit_base_patch16_siglip_224",
    "timm_model_pretrained": False, "timm_pool": "map", "timm_proj": "none"}}


def test_open_clip_configs_give_the_registered_architectures():
    fields, trunk = A.hub_config_fields({"model_cfg": _H14})
    assert trunk is None
    assert vitzoo.ViTConfig(**fields) == vitzoo.registry.default_config(
        "vit_huge_patch14_clip_quickgelu_224")
    fields, trunk = A.hub_config_fields({"model_cfg": _SIGLIP})
    assert trunk == "vit_base_patch16_siglip_224"
    assert fields == {"global_pool": "map", "num_classes": 0}  # open_clip's proj "none"


# -- the adapter on its own -----------------------------------------------------------------------
def test_renames_follow_timm_and_the_projection_is_transposed():
    raw = read_archive(ARCHIVE)
    state, unmatched = A.to_vitzoo(raw)
    assert unmatched == []
    assert state["cls_token"].shape == (1, 1, 64) and state["pos_embed"].shape == (1, 5, 64)
    torch.testing.assert_close(state["head.weight"], raw["visual.proj"].float().t())
    assert state["blocks.1.attn.qkv.weight"].shape == (192, 64)
    assert "patch_embed.proj.bias" not in state
    assert A.detect(raw) and not A.detect(state)
    keys, notes = A.set_aside(raw)
    assert set(keys) == {k for k in raw if not k.startswith("visual.")}
    assert notes == [f"text tower ({len(keys)} keys) ignored"]
