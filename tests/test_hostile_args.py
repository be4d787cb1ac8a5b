"""Hostile arguments, configs, weights, side files, model inputs and image files: each ends in a
result or a vitzoo error that names what is wrong (issue 12, arguments and inputs)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import vitzoo
from vitzoo import (
    CheckpointError,
    ConfigError,
    DatasetError,
    ImageSizeError,
    VitzooError,
    registry,
)
from vitzoo.config import MAX_PARAM_BYTES, estimate_num_params
from vitzoo.errors import ImageInputError, NonFiniteWeightsWarning
from vitzoo.loading import load_state

from conftest import random_weights, tiny_cfg

DATA = Path(__file__).parent / "data"


# -- 1. config fields: types and ranges ------------------------------------------------------------
@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("drop_rate", "0.1", "drop_rate must be a finite number, got '0.1' (str)"),
    ("drop_path_rate", float("nan"), "drop_path_rate must be a finite number, got nan"),
    ("attn_drop_rate", -0.1, "attn_drop_rate must be in [0, 1)"),
    ("norm_eps", "1e-6", "norm_eps must be a finite number, got '1e-6'"),
    ("norm_eps", float("inf"), "norm_eps must be a finite number"),
    ("init_values", "0.1", "init_values must be a finite number or None"),
    ("init_values", 1e308, "does not fit a float32"),
    ("qkv_bias", 1, "qkv_bias must be True or False, got 1 (int)"),
    ("class_token", "yes", "class_token must be True or False"),
    ("depth", True, "depth must be a positive int, got True (bool)"),
    ("num_classes", True, "num_classes must be an int >= 0, got True (bool)"),
    ("mlp_dim", True, "mlp_dim must be a positive int or None, got True (bool)"),
    ("representation_size", 0, "representation_size must be a positive int or None"),
    ("embed_dim", 32.0, "embed_dim must be a positive int, got 32.0 (float)"),
    ("reg_tokens", -1, "reg_tokens must be an int >= 0"),
    ("img_size", 0, "img_size must be positive, got 0"),
    ("img_size", -32, "img_size must be positive"),
    ("img_size", [[32, 32]], "img_size must be an int or a (height, width) pair of ints"),
    ("img_size", "32", "img_size must be an int or a (height, width) pair of ints, got '32'"),
    ("patch_size", (8.0, 8), "patch_size must be an int or a (height, width) pair"),
    ("global_pool", None, "global_pool must be a string, got None"),
    ("attn_impl", ["sdpa"], "attn_impl must be a string"),
    ("backbone_layers", "349", "backbone_layers must be a sequence of positive ints"),
    ("backbone_width", "64", "backbone_width must be a positive int, got '64' (str)"),
])
def test_a_field_of_the_wrong_type_or_range_names_field_value_and_range(field, value, fragment):
    with pytest.raises(ConfigError) as err:
        tiny_cfg(**{field: value})
    assert fragment in str(err.value)


def test_numpy_numbers_are_taken_and_stored_as_python_numbers():
    np = pytest.importorskip("numpy")
    cfg = tiny_cfg(depth=np.int64(3), img_size=(np.int32(32), 32), drop_rate=np.float32(0.25))
    assert (cfg.depth, cfg.img_size, cfg.drop_rate) == (3, (32, 32), 0.25)
    assert type(cfg.depth) is int and type(cfg.img_size[0]) is int
    assert type(cfg.drop_rate) is float


@pytest.mark.parametrize(("overrides", "fragment"), [
    (dict(depth=10**6), "depth=1000000 is over the limit of 1024 blocks"),
    (dict(embed_dim=10**6, num_heads=1), "GiB (vitzoo.config.MAX_PARAM_BYTES)"),
    (dict(img_size=10**6, patch_size=1), "patch tokens, over the limit of 1,048,576"),
    (dict(num_classes=10**9), "num_classes=1000000000"),
    (dict(in_chans=10**7), "in_chans=10000000"),
    (dict(reg_tokens=10**12), "over the limit of 64 GiB"),
    (dict(backbone_layers=(10**6,)), "over the limit of 8 stages and 1024 units"),
    (dict(backbone_layers=(1,) * 9), "over the limit of 8 stages"),
])
def test_sizes_beyond_any_machine_are_refused_before_anything_is_built(overrides, fragment,
                                                                       monkeypatch):
    monkeypatch.setattr(vitzoo.models, "build_model", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(ConfigError) as err:
        tiny_cfg(**overrides)
    assert fragment in str(err.value)
    with pytest.raises(ConfigError):  # and through create_model, before it builds
        vitzoo.create_model("vit_tiny_patch16_224", **overrides)


@pytest.mark.parametrize("name", [
    "vit_gigantic_patch14_clip_378",  # the largest registered model (1.8 billion parameters)
    "vit_giant_patch14_dinov2", "vit_so400m_patch14_siglip_384", "vit_base_r50_s16_384",
    "vit_tiny_r_s16_p8_224", "deit_base_distilled_patch16_384", "vit_base_patch16_siglip_224",
    "vit_small_patch14_reg4_dinov2", "deit3_huge_patch14_224", "vit_base_patch16_clip_224",
])
def test_the_estimate_is_within_half_a_percent_of_the_real_count(name):
    cfg = registry.default_config(name)
    with torch.device("meta"):
        model = vitzoo.create_model(name)
    real = sum(t.numel() for t in (*model.parameters(), *model.buffers()))
    assert abs(estimate_num_params(cfg) - real) <= 0.005 * real
    assert 4 * estimate_num_params(cfg) < MAX_PARAM_BYTES / 8  # far from the cap


def test_every_registered_architecture_stays_under_the_limits():
    for name in registry.list_models():
        assert 4 * estimate_num_params(registry.default_config(name)) < MAX_PARAM_BYTES


@pytest.mark.parametrize(("kwargs", "fragment"), [
    (dict(name=123), "the model name must be a non-empty string"),
    (dict(device="cuda:banana"), "device='cuda:banana' is not a device"),
    (dict(device=5), "device=5 is not a device"),
    (dict(dtype="float16"), "dtype='float16' is not a floating-point torch.dtype"),
    (dict(dtype=torch.int64), "dtype=torch.int64 is not a floating-point"),
    (dict(dtype=torch.complex64), "dtype=torch.complex64 is not a floating-point"),
    (dict(checkpoint_path=123), "checkpoint_path must be a path"),
    (dict(cache_dir=5), "cache_dir must be a path"),
    (dict(pretrained_cfg_overlay=[1]), "pretrained_cfg_overlay must be a dict"),
    (dict(features_only=True, norm="yes"), "norm must be True, False or None"),
    (dict(num_classes="10"), "num_classes must be an int >= 0, got '10'"),
    (dict(img_size=(32, 32, 3)), "img_size must be an int or a (height, width) pair"),
])
def test_create_model_arguments_of_the_wrong_kind_raise_config_errors(kwargs, fragment):
    kwargs = {"name": "vit_tiny_patch16_224", **kwargs}
    with pytest.raises(ConfigError) as err:
        vitzoo.create_model(**kwargs)
    assert fragment in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_a_device_the_machine_does_not_have_is_named():
    with pytest.raises(ConfigError, match="this machine has 0 cuda device"):
        vitzoo.create_model("vit_tiny_patch16_224", device="cuda")


def test_meta_device_builds_and_dtypes_still_work():
    model = vitzoo.create_model("vit_gigantic_patch14_clip_378", device="meta",
                                dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16


# -- 2. weights in dtypes the model cannot run ----------------------------------------------------
@pytest.fixture
def tiny_state() -> dict[str, torch.Tensor]:
    return random_weights(vitzoo.build_model(tiny_cfg())).state_dict()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_float_weights_of_another_dtype_are_converted_with_a_note(tiny_state, dtype, images):
    state = {k: v.to(dtype) for k, v in tiny_state.items()}
    model, report = load_state(state, cfg=tiny_cfg())
    name = str(dtype).removeprefix("torch.")
    assert report.notes == [f"{len(state)} tensors converted from {name} to float32"]
    assert all(p.dtype == torch.float32 for p in model.state_dict().values())
    expected, _ = load_state({k: v.float() for k, v in state.items()}, cfg=tiny_cfg())
    torch.testing.assert_close(model(images), expected(images), rtol=0, atol=0)


def test_half_weights_load_into_an_existing_model_and_a_safetensors_file(tiny_state, tmp_path,
                                                                         images):
    path = tmp_path / "half.safetensors"
    save_file({k: v.half() for k, v in tiny_state.items()}, str(path))
    model = vitzoo.build_model(tiny_cfg())
    report = vitzoo.load_checkpoint(model, path)
    assert report.notes == [f"{len(tiny_state)} tensors converted from float16 to float32"]
    assert model.eval()(images).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.uint8, torch.bool,
                                   torch.complex64])
def test_integer_bool_and_complex_weights_are_refused_naming_the_keys(tiny_state, dtype):
    state = dict(tiny_state)
    state["blocks.1.attn.qkv.weight"] = state["blocks.1.attn.qkv.weight"].to(dtype)
    with pytest.raises(CheckpointError) as err:
        load_state(state, cfg=tiny_cfg())
    name = str(dtype).removeprefix("torch.")
    assert f"{name}: blocks.*.attn.qkv.weight" in str(err.value)
    assert "floating-point weights" in str(err.value)


def test_sparse_meta_and_quantized_tensors_are_refused(tiny_state):
    state = dict(tiny_state)
    state["head.weight"] = state["head.weight"].to_sparse()
    state["norm.weight"] = torch.empty(32, device="meta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors are deprecated
        state["norm.bias"] = torch.quantize_per_tensor(state["norm.bias"], 0.1, 0, torch.qint8)
    model = vitzoo.build_model(tiny_cfg())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        vitzoo.load_checkpoint(model, state)
    message = str(err.value)
    assert "sparse_coo layout: head.weight" in message
    assert "meta (no data): norm.weight" in message and "quantized" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_non_finite_weights_load_with_a_warning_naming_them(tiny_state):
    state = dict(tiny_state)
    state["norm.weight"] = torch.full((32,), float("nan"))
    state["blocks.1.norm1.bias"] = torch.full((32,), float("inf"))
    with pytest.warns(NonFiniteWeightsWarning, match=r"2 tensors with NaN or infinite values "
                                                     r"\(blocks\.\*\.norm1\.bias, norm\.weight\)"):
        model, report = load_state(state, cfg=tiny_cfg())
    assert torch.isnan(model.norm.weight).all()
    assert report.notes == ["2 tensors with NaN or infinite values: blocks.*.norm1.bias, "
                            "norm.weight"]


def test_a_state_dict_of_non_tensors_is_refused(tiny_state):
    model = vitzoo.build_model(tiny_cfg())
    with pytest.raises(CheckpointError, match="'norm.weight' is not a string key with a tensor"):
        vitzoo.load_checkpoint(model, {**tiny_state, "norm.weight": 3})
    with pytest.raises(CheckpointError, match="5 is not a string key"):
        vitzoo.load_checkpoint(model, {**tiny_state, 5: tiny_state["norm.weight"]})


# -- 3. side files and adapter-level shapes -------------------------------------------------------
def _hf_dir(tmp_path: Path, **changes) -> Path:
    hub = tmp_path / "hf"
    shutil.copytree(DATA / "hf_vit_tiny", hub)
    config = json.loads((hub / "config.json").read_text())
    for key, value in changes.items():
        if value is _DELETE:
            config.pop(key)
        else:
            config[key] = value
    (hub / "config.json").write_text(json.dumps(config))
    return hub


_DELETE = object()


@pytest.mark.parametrize(("changes", "fragment"), [
    (dict(hidden_size="32"), "field 'hidden_size' must be an integer"),
    (dict(hidden_size=_DELETE), "field 'hidden_size' is missing"),
    (dict(intermediate_size=None), "field 'intermediate_size' is null"),
    (dict(num_hidden_layers=True), "field 'num_hidden_layers' must be an integer"),
    (dict(num_attention_heads=10**30), "field 'num_attention_heads' must be an integer in"),
    (dict(image_size=[32]), "field 'image_size' must be an integer in [1, 2147483647] or a"),
    (dict(layer_norm_eps="1e-12"), "field 'layer_norm_eps' must be a positive finite number"),
    (dict(qkv_bias=1), "field 'qkv_bias' must be true or false"),
    (dict(hidden_act=["gelu"]), "field 'hidden_act' must be a string"),
    (dict(id2label="12"), "field 'id2label' must be an object"),
    (dict(id2label=[1, 2]), "field 'id2label' must be an object"),
    (dict(id2label={"0": 1}), "field 'id2label' must map indices"),
    (dict(id2label={"0": "a", "7": "b"}), "must number the classes 0 .. 1"),
    (dict(pretrained_cfg="x"), "field 'pretrained_cfg' must be an object"),
])
def test_a_malformed_transformers_config_names_the_file_and_the_field(tmp_path, changes,
                                                                      fragment):
    hub = _hf_dir(tmp_path, **changes)
    with pytest.raises(CheckpointError) as err:
        vitzoo.load_model(hub)
    assert str(hub / "config.json") in str(err.value) and fragment in str(err.value)


@pytest.mark.parametrize(("pre", "fragment"), [
    ({"image_mean": None, "image_std": [0.5] * 3}, "field 'image_mean' is null"),
    ({"image_mean": [0.5] * 2, "image_std": [0.5] * 3}, "must be a list of 3 finite numbers"),
    ({"image_mean": ["0.5"] * 3, "image_std": [0.5] * 3}, "'image_mean' must be a list of 3"),
    ({"image_mean": [0.5] * 3, "image_std": [0.0] * 3}, "3 positive finite numbers"),
    ({"image_mean": {"a": 1}, "image_std": [0.5] * 3}, "'image_mean' must be a list"),
])
def test_a_malformed_preprocessor_config_names_the_file_and_the_field(tmp_path, pre, fragment):
    hub = _hf_dir(tmp_path)
    (hub / "preprocessor_config.json").write_text(json.dumps(pre))
    with pytest.raises(CheckpointError) as err:
        vitzoo.load_model(hub)
    assert "preprocessor_config.json" in str(err.value) and fragment in str(err.value)


def test_a_preprocessor_config_with_one_number_per_field_is_read(tmp_path):
    hub = _hf_dir(tmp_path)
    (hub / "preprocessor_config.json").write_text(json.dumps({"image_mean": 0.5,
                                                              "image_std": 0.25}))
    cfg = vitzoo.load_model(hub).pretrained_cfg
    assert (cfg["mean"], cfg["std"]) == ((0.5,) * 3, (0.25,) * 3)


def test_non_utf8_side_files_are_checkpoint_errors(tmp_path):
    hub = _hf_dir(tmp_path)
    (hub / "config.json").write_bytes(b'{"model_type": "vit", "x": "\xff\xfe"}')
    with pytest.raises(CheckpointError, match="config.json"):
        vitzoo.load_model(hub)


def _open_clip_dir(tmp_path: Path, edit) -> Path:
    hub = tmp_path / "oc"
    shutil.copytree(DATA / "clip" / "open_clip_gelu", hub)
    config = json.loads((hub / "open_clip_config.json").read_text())
    edit(config)
    (hub / "open_clip_config.json").write_text(json.dumps(config))
    return hub


def _vision(key, value):
    return lambda c: c["model_cfg"]["vision_cfg"].__setitem__(key, value)


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda c: c.__setitem__("model_cfg", []), "field 'model_cfg' must be an object"),
    (lambda c: c.pop("model_cfg"), "field 'model_cfg' is missing"),
    (lambda c: c["model_cfg"].__setitem__("embed_dim", "8"),
     "field 'model_cfg.embed_dim' must be an integer"),
    (lambda c: c["model_cfg"].__setitem__("vision_cfg", None),
     "field 'model_cfg.vision_cfg' is null"),
    (_vision("image_size", []), "'model_cfg.vision_cfg.image_size' must be an integer"),
    (_vision("width", 1e308), "'model_cfg.vision_cfg.width' must be an integer"),
    (_vision("head_width", False), "'model_cfg.vision_cfg.head_width' must be an integer"),
    (_vision("head_width", 3), "does not divide 'model_cfg.vision_cfg.width'"),
    (_vision("mlp_ratio", "2"), "'model_cfg.vision_cfg.mlp_ratio' must be a positive finite"),
    (_vision("layers", 10**6), "depth=1000000 is over the limit"),
    (_vision("norm_kwargs", [1]), "'model_cfg.vision_cfg.norm_kwargs' must be an object"),
    (lambda c: c.__setitem__("preprocess_cfg", "12"), "'preprocess_cfg' must be an object"),
    (lambda c: c["preprocess_cfg"].__setitem__("mean", "0.5"),
     "'preprocess_cfg.mean' must be a list of 3 finite numbers"),
    (lambda c: c["preprocess_cfg"].__setitem__("std", [0, 1, 1]), "3 positive finite numbers"),
    (lambda c: c["preprocess_cfg"].__setitem__("resize_mode", []),
     "'preprocess_cfg.resize_mode' must be one of"),
    (lambda c: c["preprocess_cfg"].__setitem__("interpolation", "x"),
     "'preprocess_cfg.interpolation' must be one of 'bicubic'"),
])
def test_a_malformed_open_clip_config_names_the_file_and_the_field(tmp_path, edit, fragment):
    hub = _open_clip_dir(tmp_path, edit)
    with pytest.raises(CheckpointError) as err:
        vitzoo.load_model(hub)
    assert "open_clip_config.json" in str(err.value) and fragment in str(err.value)


@pytest.mark.parametrize(("config", "fragment"), [
    ({"architecture": ["vit_tiny_patch16_224"]}, "field 'architecture' must be a string"),
    ({"architecture": "vit_nope"}, "its architecture 'vit_nope' is not one vitzoo builds"),
    ({"architecture": "vit_tiny_patch16_224", "num_classes": "5"},
     "field 'num_classes' must be an integer"),
    ({"architecture": "vit_tiny_patch16_224", "pretrained_cfg": True},
     "field 'pretrained_cfg' must be an object"),
    ({"vitzoo_config": None}, "field 'vitzoo_config' is null"),
    ({"vitzoo_config": "12"}, "field 'vitzoo_config' must be an object"),
    ({"vitzoo_config": {"depth": "2"}}, "depth must be a positive int, got '2'"),
    ({"vitzoo_config": {"init_values": 1e308}}, "does not fit a float32"),
])
def test_a_malformed_timm_or_vitzoo_hub_config_names_the_file(tmp_path, tiny_state, config,
                                                              fragment):
    hub = tmp_path / "hub"
    hub.mkdir()
    save_file(tiny_state, str(hub / "model.safetensors"))
    (hub / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as err:
        vitzoo.load_model(hub)
    assert str(hub) in str(err.value) and fragment in str(err.value)


def _edited(src: Path, dst: Path, edit) -> Path:
    state = vitzoo.io.load_state_dict(src)
    edit(state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(dst))
    return dst


@pytest.mark.parametrize(("src", "edit", "fragment"), [
    ("dinov2/plain.pth", lambda s: s.__setitem__("cls_token", s["cls_token"].flatten()),
     "cls_token"),
    ("dinov2/reg4.pth", lambda s: s.__setitem__("cls_token", torch.tensor(1.0)),
     "cls_token has shape (), not (1, 1, D)"),
    ("dinov2/plain.pth", lambda s: s.pop("pos_embed"), "pos_embed"),
    ("dinov2/swiglu.pth", lambda s: s.pop("blocks.0.mlp.w3.weight"), "mlp.fc2.weight"),
    ("clip/open_clip_gelu_epoch_1.pt",
     lambda s: s.__setitem__("visual.conv1.weight", s["visual.conv1.weight"][0]),
     "visual.conv1.weight (patch_embed.proj.weight) has shape (3, 4, 4), not 4-D"),
    ("clip/open_clip_gelu_epoch_1.pt", lambda s: s.pop("visual.conv1.weight"),
     "patch_embed.proj.weight"),
    ("clip/open_clip_gelu_epoch_1.pt",
     lambda s: s.__setitem__("visual.positional_embedding", torch.tensor(1.0)),
     "visual.positional_embedding (pos_embed) has shape (1,), not 3-D"),
    ("deit3/deit3_tiny.pth", lambda s: s.__setitem__("patch_embed.proj.weight", torch.zeros(3)),
     "patch_embed.proj.weight has shape (3,), not 4-D"),
    ("torchvision_vit_tiny.pth", lambda s: s.__setitem__("conv_proj.weight", torch.tensor(1.0)),
     "no registered architecture"),
    ("hf_vit_tiny/model.safetensors", lambda s: None, "no registered architecture"),
])
def test_adapter_level_shape_errors_are_checkpoint_errors(tmp_path, src, edit, fragment):
    path = _edited(DATA / src, tmp_path / "edited.safetensors", edit)
    with pytest.raises(CheckpointError) as err:
        vitzoo.load_model(path)
    assert str(path) in str(err.value) and fragment in str(err.value)


def test_a_rank_0_patch_kernel_in_load_checkpoint_is_a_mismatch_not_an_index_error(tmp_path):
    path = _edited(DATA / "torchvision_vit_tiny.pth", tmp_path / "tv.safetensors",
                   lambda s: s.__setitem__("conv_proj.weight", torch.tensor(1.0)))
    model = vitzoo.build_model(tiny_cfg())
    with pytest.raises(CheckpointError):
        vitzoo.load_checkpoint(model, path)
    report = vitzoo.load_checkpoint(model, path, strict=False)
    assert "patch_embed.proj.weight" in report.mismatched


# -- 4. model inputs ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model() -> vitzoo.VisionTransformer:
    return vitzoo.build_model(tiny_cfg()).eval()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_an_integer_image_says_to_convert_and_normalise(tiny_model, dtype):
    x = torch.zeros(1, 3, 32, 32, dtype=dtype)
    with pytest.raises(ImageInputError) as err:
        tiny_model(x)
    message = str(err.value)
    assert f"got a {dtype} tensor" in message and "vitzoo.create_transform" in message
    assert isinstance(err.value, TypeError) and isinstance(err.value, VitzooError)


@pytest.mark.parametrize("x", [None, 3, 2.5, "image", [[0.0] * 32] * 32])
def test_an_input_that_is_not_a_tensor_is_named(tiny_model, x):
    with pytest.raises(ImageInputError, match=f"torch.Tensor, got a {type(x).__name__}"):
        tiny_model(x)


def test_an_input_on_another_device_is_named(tiny_model):
    with pytest.raises(ImageInputError, match="the input is on meta and the model's weights "
                                              "on cpu"):
        tiny_model(torch.zeros(1, 3, 32, 32, device="meta"))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_another_float_type_than_the_weights_is_named_unless_under_autocast(tiny_model, images,
                                                                            dtype):
    with pytest.raises(ImageInputError, match=f"the input is {dtype} and the model's weights "
                                              "torch.float32"):
        tiny_model(images.to(dtype))
    if dtype == torch.bfloat16:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert tiny_model(images.to(dtype)).dtype == torch.bfloat16


def test_a_hybrid_checks_dtype_and_device_too():
    model = vitzoo.build_model(tiny_cfg(backbone_layers=(), patch_size=1, img_size=32,
                                        embed_dim=32)).eval()
    with pytest.raises(ImageInputError, match="floating-point"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ImageInputError, match="the input is on meta"):
        model(torch.zeros(1, 3, 32, 32, device="meta"))
    with pytest.raises(ImageInputError, match="the input is torch.float64"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.float64))


def test_rank_channels_and_size_are_still_image_size_errors(tiny_model):
    for x in (torch.zeros(3, 32, 32), torch.zeros(1, 1, 32, 32), torch.zeros(1, 3, 31, 32)):
        with pytest.raises(ImageSizeError):
            tiny_model(x)


def test_the_input_checks_script_trace_and_compile(tiny_model, images):
    scripted = torch.jit.script(tiny_model)
    with pytest.raises(Exception, match="floating-point images, got an integer"):
        scripted(images.to(torch.uint8))
    traced = torch.fx.symbolic_trace(tiny_model)
    assert "check_image" in traced.code
    with pytest.raises(ImageInputError):
        traced(images.to(torch.uint8))
    compiled = torch.compile(tiny_model, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(images), tiny_model(images))


# -- 5. image files -------------------------------------------------------------------------------
def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                                0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.fixture
def bad_images(tmp_path) -> dict[str, Path]:
    image = pytest.importorskip("PIL.Image")
    image.new("RGB", (64, 64), "red").save(tmp_path / "good.jpg")
    jpeg = (tmp_path / "good.jpg").read_bytes()
    files = {"empty": b"", "text": b"not an image at all", "truncated": jpeg[: len(jpeg) // 2],
             "bomb": _png_header(10_000, 10_000), "huge_header": _png_header(100_000, 100_000)}
    paths = {}
    for name, payload in files.items():
        paths[name] = tmp_path / f"{name}.png"
        paths[name].write_bytes(payload)
    paths["folder"] = tmp_path / "folder.png"
    paths["folder"].mkdir()
    paths["missing"] = tmp_path / "missing.png"
    if hasattr(os, "mkfifo"):
        paths["fifo"] = tmp_path / "fifo.png"
        os.mkfifo(paths["fifo"])
    return paths


@pytest.mark.parametrize(("name", "fragment"), [
    ("empty", "is empty (0 bytes)"), ("text", "is not a readable image"),
    ("truncated", "is not a readable image (OSError: "),
    ("bomb", "100,000,000 pixels), over the limit of 89,478,485"),
    ("huge_header", "over the pixel limit"), ("folder", "is a directory"),
    ("missing", "No such file"), ("fifo", "is not a regular file"),
])
def test_a_bad_image_file_is_a_dataset_error_naming_it(bad_images, name, fragment):
    if name not in bad_images:
        pytest.skip("no FIFOs here")
    with pytest.raises(DatasetError) as err:
        vitzoo.data.open_image(bad_images[name])
    assert str(bad_images[name]) in str(err.value) and fragment in str(err.value)


def test_the_pixel_limit_can_be_lowered(tmp_path):
    image = pytest.importorskip("PIL.Image")
    image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    assert vitzoo.data.open_image(tmp_path / "a.png").size == (64, 48)
    with pytest.raises(DatasetError, match="64x48 image"):
        vitzoo.data.open_image(tmp_path / "a.png", max_pixels=1000)


def test_image_folder_names_a_broken_file(tmp_path):
    image = pytest.importorskip("PIL.Image")
    (tmp_path / "cat").mkdir()
    image.new("RGB", (8, 8)).save(tmp_path / "cat" / "a.png")
    (tmp_path / "cat" / "b.png").write_bytes(b"\x89PNG broken")
    folder = vitzoo.data.ImageFolder(tmp_path)
    assert folder[0][0].size == (8, 8)
    with pytest.raises(DatasetError, match="b.png is not a readable image"):
        folder[1]


def test_predict_reports_a_broken_image_and_a_bad_top_k(tmp_path, capsys, tiny_state,
                                                        bad_images):
    from vitzoo.cli.main import main

    path = vitzoo.io.save_model(vitzoo.build_model(tiny_cfg()), tmp_path / "m.safetensors")
    assert main(["predict", str(path), str(bad_images["text"])]) == 2
    assert "text.png is not a readable image" in capsys.readouterr().err
    assert main(["predict", str(path), str(bad_images["fifo" if "fifo" in bad_images
                                                      else "folder"])]) == 2
    assert main(["predict", str(path), str(bad_images["empty"]), "--top-k", "0"]) == 2
    assert "--top-k must be at least 1" in capsys.readouterr().err


def test_cli_numbers_are_checked(capsys):
    from vitzoo.cli.main import main

    assert main(["validate", "digits", "digits", "--batch-size", "0"]) == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err
    assert main(["convert", "a.npz", "b.safetensors", "--img-size", "0"]) == 2
    assert "--img-size must be a positive number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["finetune", "--lr", "nan"])
    assert "'nan' is not a finite number" in capsys.readouterr().err


@pytest.mark.parametrize("changes, fragment", [
    ({"lr": "0.1"}, "lr='0.1' is str, not a number"),
    ({"lr": float("nan")}, "lr=nan is not finite"),
    ({"lr": 0}, "lr=0 must be greater than 0"),
    ({"steps": True}, "steps=True is bool, not an integer"),
    ({"batch_size": 8.0}, "batch_size=8.0 is float, not an integer"),
    ({"momentum": 1.0}, "momentum=1.0 must be less than 1"),
    ({"label_smoothing": -0.1}, "label_smoothing=-0.1 must be at least 0"),
    ({"clip_grad_norm": float("inf")}, "clip_grad_norm=inf is not finite"),
    ({"betas": (0.9, 1.0)}, r"betas=\(0.9, 1.0\): 1.0 must be less than 1"),
    ({"betas": 0.9}, "betas=0.9 must be a pair of numbers"),
    ({"train_scale": (0.5, 0.1)}, r"train_scale=\(0.5, 0.1\) must be \(low, high\) with low"),
    ({"train_scale": (0.0, 1.0)}, r"train_scale=\(0.0, 1.0\): 0.0 must be greater than 0"),
    ({"hflip": 2}, "hflip=2 must be at most 1"),
    ({"augment": 1}, "augment=1 must be True or False"),
    ({"seed": -1}, "seed=-1 must be at least 0"),
    ({"distill_tau": 0}, "distill_tau=0 must be greater than 0"),
])
def test_a_training_option_of_the_wrong_type_or_range_is_refused(changes, fragment):
    from vitzoo.train import TrainConfig

    # was: accepted, then a TypeError or a NaN loss deep in the first step
    with pytest.raises(vitzoo.ConfigError, match="training option " + fragment):
        TrainConfig(**changes)


def test_training_options_from_json_and_optional_fields_are_taken():
    from vitzoo.train import TrainConfig

    cfg = TrainConfig(lr=1, train_scale=[0.05, 1.0], layer_decay=None, clip_grad_norm=None,
                      checkpoint_every=None)
    assert cfg.lr == 1 and list(cfg.train_scale) == [0.05, 1.0]
