"""DINOv2 original files (facebookresearch/dinov2, with and without registers, SwiGLU) load and
reproduce the original code's outputs, at the native size and at sizes where the original
interpolates its position embeddings.

The fixtures in ``tests/data/dinov2/`` come from the original code
(``tests/fixtures/make_dinov2_fixtures.py``): tiny ``DinoVisionTransformer`` s built as the hub
builds the releases, saved as the hub files are (bare ``state_dict()``), and their outputs.
Measured against the original (torch 2.13, CPU): max abs difference 0.0 for every output,
size and variant; the tests allow 1e-6.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vitzoo
from vitzoo.adapters import detect_format, dinov2
from vitzoo.errors import CheckpointError, ExportError
from vitzoo.layers import interpolate_pos_embed, resample_pos_embed

D2 = Path(__file__).parent / "data" / "dinov2"
PATCH = 4
GRIDS = [(4, 4), (2, 5), (6, 6)]  # native; rows shrink and columns grow; larger
VARIANTS = ["plain", "reg4", "swiglu"]
# measured: 0.0 where the fixtures were made; up to 1.4e-6 on a CPU whose MKL kernels round
# differently (the reference outputs are stored, so the tolerance covers a few float32 ulps)
ATOL = 2e-6


def image(h: int, w: int, batch: int = 1) -> torch.Tensor:
    """The fixture script's input (no RNG)."""
    n = torch.arange(batch * 3 * h * w, dtype=torch.float32).reshape(batch, 3, h, w)
    return torch.sin(n * 0.0137) + 0.5 * torch.cos(n * 0.00071)


@pytest.fixture(scope="module")
def ref() -> dict[str, torch.Tensor]:
    return load_file(str(D2 / "reference.safetensors"))


@pytest.fixture(scope="module")
def models() -> dict[str, vitzoo.VisionTransformer]:
    return {name: vitzoo.load_model(D2 / f"{name}.pth") for name in VARIANTS}


def close(got: torch.Tensor, want: torch.Tensor, atol: float = ATOL) -> None:
    torch.testing.assert_close(got, want, rtol=0, atol=atol)


def check_outputs(model: vitzoo.VisionTransformer, ref: dict[str, torch.Tensor], name: str,
                  grid: tuple[int, int]) -> None:
    """Every stored output of the original for ``name`` at ``grid``, from vitzoo's methods."""
    key = f"{name}.{grid[0]}x{grid[1]}"
    x = image(grid[0] * PATCH, grid[1] * PATCH)
    R = model.num_reg_tokens
    with torch.no_grad():
        logits = model(x)
        tokens = model.forward_features(x)  # (B, 1 + R + N, D)
        [(patches, prefix)] = model.forward_intermediates(
            x, indices=[model.cfg.depth - 1], return_prefix_tokens=True, norm=False,
            output_fmt="NLC", intermediates_only=True)
        n_last = 2 if model.cfg.depth >= 2 else 1
        last = model.get_intermediate_layers(x, n=n_last, reshape=True,
                                             return_class_token=True, norm=True)
        first = model.get_intermediate_layers(x, n=[0], reshape=True, return_class_token=True,
                                              norm=False)
    close(logits, ref[f"{key}.x_norm_clstoken"])  # the original's forward
    close(tokens[:, 0], ref[f"{key}.x_norm_clstoken"])
    if R:
        close(tokens[:, 1:1 + R], ref[f"{key}.x_norm_regtokens"])
    close(tokens[:, 1 + R:], ref[f"{key}.x_norm_patchtokens"])
    close(torch.cat([prefix, patches], dim=1), ref[f"{key}.x_prenorm"])
    want_maps = ref[f"{key}.x_norm_patchtokens"].reshape(1, *grid, -1).permute(0, 3, 1, 2)
    close(last[-1][0], want_maps)
    close(last[-1][1], ref[f"{key}.x_norm_clstoken"])
    for i, (maps, cls) in enumerate(last[:-1]):
        close(maps, ref[f"{key}.last{n_last}_norm.{i}.patch"])
        close(cls, ref[f"{key}.last{n_last}_norm.{i}.cls"])
    if model.cfg.depth == 1:  # block 0 is the last block
        want_first = ref[f"{key}.x_prenorm"][:, 1 + R:]
        want_first = want_first.reshape(1, *grid, -1).permute(0, 3, 1, 2), ref[
            f"{key}.x_prenorm"][:, 0]
    else:
        want_first = ref[f"{key}.first_prenorm.patch"], ref[f"{key}.first_prenorm.cls"]
    close(first[0][0], want_first[0])
    close(first[0][1], want_first[1])


# -- the original's outputs -----------------------------------------------------------------------
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("name", VARIANTS)
def test_load_model_reproduces_the_original_dinov2_at_native_and_other_sizes(
        models, ref, name, grid):
    check_outputs(models[name], ref, name, grid)


def test_the_offset_rule_matters_at_other_sizes_so_the_plain_model_needs_it(ref):
    """Control: the plain fixture run with timm's rule (antialiased bicubic to the size) is
    off by > 1e-3 at 2x5 and 6x6, so the tests above tell the rules apart."""
    model = vitzoo.load_model(D2 / "plain.pth", resample="bicubic", pos_embed_antialias=True)
    for grid in GRIDS[1:]:
        with torch.no_grad():
            got = model(image(grid[0] * PATCH, grid[1] * PATCH))
        diff = (got - ref[f"plain.{grid[0]}x{grid[1]}.x_norm_clstoken"]).abs().max().item()
        assert diff > 1e-3


def test_the_config_is_read_off_the_file_with_dinov2s_numerics(models):
    plain, reg4, swiglu = models["plain"].cfg, models["reg4"].cfg, models["swiglu"].cfg
    for cfg in (plain, reg4, swiglu):
        assert (cfg.embed_dim, cfg.num_heads, cfg.patch_size, cfg.img_size) == (
            64, 1, (4, 4), (16, 16))
        assert (cfg.num_classes, cfg.global_pool, cfg.norm_eps, cfg.gelu_approximate) == (
            0, "token", 1e-6, "none")
        assert cfg.dynamic_img_size and cfg.init_values is not None
    assert (plain.depth, plain.reg_tokens, plain.no_embed_class, plain.mlp_layer) == (
        2, 0, False, "mlp")
    assert (plain.pos_embed_resample, plain.pos_embed_antialias) == ("dinov2", False)
    assert (reg4.depth, reg4.reg_tokens, reg4.no_embed_class) == (1, 4, True)
    assert (reg4.pos_embed_resample, reg4.pos_embed_antialias) == ("dinov2_reg", True)
    # the original's SwiGLUFFNFused width: (int(32 * 2 / 3) + 7) // 8 * 8 = 24
    assert (swiglu.mlp_layer, swiglu.mlp_dim, swiglu.pos_embed_resample) == (
        "swiglu", 24, "dinov2")
    pcfg = models["reg4"].pretrained_cfg
    assert (pcfg["mean"], pcfg["std"]) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert (pcfg["interpolation"], pcfg["crop_pct"], pcfg["input_size"]) == (
        "bicubic", 1.0, (3, 16, 16))
    assert pcfg["fixed_input_size"] is False


@pytest.mark.parametrize("registers", [0, 4])
def test_a_release_sized_table_reads_as_518_pixels(registers):
    """37 x 37 patch rows of 14 pixels: the releases' 518; width 384 gives 6 heads (ViT-S)."""
    state = {"patch_embed.proj.weight": torch.empty(384, 3, 14, 14),
             "patch_embed.proj.bias": torch.empty(384),
             "pos_embed": torch.empty(1, (0 if registers else 1) + 37 * 37, 384),
             "cls_token": torch.empty(1, 1, 384),
             "blocks.0.norm1.weight": torch.empty(384),
             "blocks.0.mlp.fc1.weight": torch.empty(1536, 384),
             "blocks.0.mlp.fc2.weight": torch.empty(384, 1536)}
    if registers:
        state["reg_token"] = torch.empty(1, registers, 384)
    fields = dinov2.config_fields(state)
    assert (fields["img_size"], fields["num_heads"], fields["mlp_dim"]) == ((518, 518), 6, 1536)
    assert fields["reg_tokens"] == registers


def test_load_time_resampling_to_another_size_follows_the_dinov2_rule(ref):
    """``load_model(img_size=...)`` resamples once with the file's rule: at that size the
    model computes what the original computes there."""
    for name in VARIANTS:
        model = vitzoo.load_model(D2 / f"{name}.pth", img_size=(2 * PATCH, 5 * PATCH))
        assert model.cfg.img_size == (8, 20)
        assert "pos_embed" in model.load_report.resampled
        with torch.no_grad():
            got = model(image(2 * PATCH, 5 * PATCH))
        close(got, ref[f"{name}.2x5.x_norm_clstoken"])


# -- the converter --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", VARIANTS)
def test_the_converter_leaves_its_input_unchanged(name):
    state = torch.load(D2 / f"{name}.pth", weights_only=True)
    before = {k: v.clone() for k, v in state.items()}
    assert detect_format(state) == "dinov2"
    converted, unplaced = dinov2.to_vitzoo(state)
    assert unplaced == []
    assert list(state) == list(before)
    assert all(torch.equal(state[k], before[k]) for k in before)
    assert "mask_token" not in converted and "mask_token" in state
    if name == "reg4":
        assert "register_tokens" in state and "reg_token" in converted
        close(converted["cls_token"], state["cls_token"] + state["pos_embed"][:, :1], atol=0)
        assert converted["pos_embed"].shape[1] == state["pos_embed"].shape[1] - 1
    if name == "swiglu":
        assert "blocks.0.mlp.w12.weight" in state and "blocks.0.mlp.fc1.weight" in converted


def test_training_dumps_with_chunked_blocks_read_as_the_release():
    """``block_chunks > 0`` names block i ``blocks.{chunk}.{i}`` (the releases use 0)."""
    state = torch.load(D2 / "plain.pth", weights_only=True)
    chunked = {k.replace("blocks.0.", "blocks.0.0.").replace("blocks.1.", "blocks.1.1."): v
               for k, v in state.items()}
    assert any(k.startswith("blocks.1.1.") for k in chunked)
    want, _ = dinov2.to_vitzoo(state)
    got, unplaced = dinov2.to_vitzoo(chunked)
    assert unplaced == [] and list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("name", VARIANTS)
def test_convert_checkpoint_round_trip_keeps_outputs_dynamic_size_and_rule(tmp_path, ref, name):
    out = vitzoo.convert_checkpoint(D2 / f"{name}.pth", tmp_path / f"{name}.safetensors")
    model = vitzoo.load_model(out)
    original = vitzoo.load_model(D2 / f"{name}.pth")
    assert model.cfg == original.cfg
    assert model.cfg.dynamic_img_size
    assert model.cfg.pos_embed_resample == ("dinov2_reg" if name == "reg4" else "dinov2")
    assert model.pretrained_cfg["crop_pct"] == 1.0
    check_outputs(model, ref, name, (2, 5))


def _broken(tmp_path, change) -> str:
    state = torch.load(D2 / "reg4.pth", weights_only=True)
    change(state)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    return str(path)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(pos_embed=s["pos_embed"][:, :-1]), "not a square grid"),
    (lambda s: s.update(register_tokens=s["register_tokens"][0]), "register_tokens has shape"),
    (lambda s: s.update(pos_embed=s["pos_embed"][0]), "pos_embed has shape"),
    (lambda s: s.pop("pos_embed"), "needs cls_token and pos_embed"),
    (lambda s: s.update({"blocks.0.attn.qkv.weight": s["blocks.0.attn.qkv.weight"][:, :32],
                         "patch_embed.proj.weight": s["patch_embed.proj.weight"][:32]}),
     "not a multiple of DINOv2's head size"),
], ids=["pos-rows", "reg-rank", "pos-rank", "no-pos", "width"])
def test_a_malformed_dinov2_file_raises_a_checkpoint_error(tmp_path, change, message):
    path = _broken(tmp_path, change)
    with pytest.raises(CheckpointError, match=message):
        vitzoo.load_model(path)


def test_load_checkpoint_of_a_malformed_file_raises_a_checkpoint_error(tmp_path, models):
    path = _broken(tmp_path, lambda s: s.update(register_tokens=s["register_tokens"][0]))
    with pytest.raises(CheckpointError, match="register_tokens has shape"):
        vitzoo.load_checkpoint(models["reg4"], path)


# -- the resample modes ---------------------------------------------------------------------------
@pytest.mark.parametrize("rule", ["dinov2", "dinov2_reg"])
def test_release_sized_tables_resample_as_the_originals_interpolate_pos_encoding(ref, rule):
    """A 37 x 37 table (the releases' grid) to 16x20 and 23x45: bit-exact, at run time and
    at load time."""
    table = ref["pos37.table"]
    for gh, gw in [(16, 20), (23, 45)]:
        want = ref[f"pos37.{rule}.{gh}x{gw}"]
        close(interpolate_pos_embed(table, [gh, gw], [37, 37], 1, rule, False), want, atol=0)
        close(resample_pos_embed(table, (gh, gw), num_prefix_tokens=1, mode=rule), want, atol=0)
    assert interpolate_pos_embed(table, [37, 37], [37, 37], 1, rule, False) is table


@pytest.mark.parametrize("grid", [(16, 16), (40, 40), (16, 45)])
def test_dinov2_reg_is_bit_identical_to_antialiased_bicubic(grid):
    """The register models' rule is timm's (``"bicubic"`` with antialias): same call, also
    for square grids, shrinking or growing."""
    table = torch.randn(1, 37 * 37, 8, generator=torch.Generator().manual_seed(0))
    reg = interpolate_pos_embed(table, list(grid), [37, 37], 0, "dinov2_reg", False)
    bicubic = interpolate_pos_embed(table, list(grid), [37, 37], 0, "bicubic", True)
    assert torch.equal(reg, bicubic)
    plain = interpolate_pos_embed(table, list(grid), [37, 37], 0, "dinov2", False)
    assert (plain - bicubic).abs().max() > 1e-2  # the offset rule is another function


@pytest.mark.parametrize("name", ["plain", "reg4"])
def test_dinov2_models_script_and_trace_at_other_sizes(models, name):
    model = models[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script's deprecation
        scripted = torch.jit.script(model)
        traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        for gh, gw in GRIDS:
            x = image(gh * PATCH, gw * PATCH)
            want = model(x)
            close(scripted(x), want)
            close(traced(x), want, atol=0)


def test_a_dynamic_size_export_of_the_offset_rule_is_refused_a_fixed_size_one_works(models):
    from vitzoo import export

    model = models["plain"]
    with pytest.raises(ExportError, match="cannot be exported for dynamic image sizes"):
        export.export_program(model, dynamic_size=True)
    program = export.export_program(model, batch_size=1, dynamic_batch=False)
    x = image(4 * PATCH, 4 * PATCH)
    with torch.no_grad():
        close(program.module()(x), model(x))


def test_a_dynamic_size_export_of_the_register_rule_runs_at_other_sizes(models):
    from vitzoo import export

    model = models["reg4"]
    program = export.export_program(model, dynamic_size=True)
    with torch.no_grad():
        for gh, gw in GRIDS:
            x = image(gh * PATCH, gw * PATCH)
            close(program.module()(x), model(x))


# -- timm -----------------------------------------------------------------------------------------
def timm_cfg(name: str) -> vitzoo.ViTConfig:
    """The vitzoo config of a ``timm_<name>.pth`` fixture (width 16, 2 heads, 1 block)."""
    mlp = {"plain": dict(mlp_dim=16), "reg4": dict(mlp_dim=16),
           # (int(32 * 2 / 3) + 7) // 8 * 8
           "swiglu": dict(mlp_dim=24, mlp_layer="swiglu")}[name]
    reg = dict(reg_tokens=4, no_embed_class=True) if name == "reg4" else {}
    return vitzoo.ViTConfig(img_size=16, patch_size=PATCH, embed_dim=16, depth=1, num_heads=2,
                            num_classes=0, init_values=1e-5, **mlp, **reg)


@pytest.fixture(scope="module")
def timm_ref() -> dict[str, torch.Tensor]:
    return load_file(str(D2 / "timm_reference.safetensors"))


@pytest.mark.parametrize("name", VARIANTS)
def test_timm_converted_dinov2_files_load_strictly_and_give_timms_outputs(timm_ref, name):
    model = vitzoo.build_model(timm_cfg(name)).eval()
    report = vitzoo.load_checkpoint(model, D2 / f"timm_{name}.pth", strict=True)
    assert not report.missing and not report.unexpected
    x = image(4 * PATCH, 4 * PATCH)
    with torch.no_grad():
        # equal where timm's outputs were stored; a few ulps on another CPU
        close(model.forward_features(x), timm_ref[f"{name}.forward_features"], atol=1e-6)
        close(model(x), timm_ref[f"{name}.forward"], atol=1e-6)


@pytest.mark.parametrize("name", VARIANTS)
def test_timms_file_and_the_original_give_the_same_vitzoo_state(name):
    timm_state = torch.load(D2 / f"timm_{name}.pth", weights_only=True)
    ours, unplaced = dinov2.to_vitzoo(torch.load(D2 / f"timm_{name}_original.pth",
                                                 weights_only=True))
    assert unplaced == [] and set(ours) == set(timm_state)
    assert all(torch.equal(ours[k], timm_state[k]) for k in ours)


def test_timm_at_other_sizes_is_vitzoo_with_antialiased_bicubic_not_the_original(ref, timm_ref):
    """timm's ``dynamic_img_size`` resamples a plain DINOv2 with antialiased bicubic to the
    size, not the original's offset-0.1 scale factors: timm equals the original at the native
    grid only (measured 0.017-0.026 apart at 2x5 and 6x6). vitzoo with that rule is timm."""
    as_timm = vitzoo.load_model(D2 / "plain.pth", resample="bicubic", pos_embed_antialias=True)
    for gh, gw in GRIDS:
        with torch.no_grad():
            got = as_timm(image(gh * PATCH, gw * PATCH))
        close(got, timm_ref[f"plain_dynamic.{gh}x{gw}.forward"])
        diff = (got - ref[f"plain.{gh}x{gw}.x_norm_clstoken"]).abs().max().item()
        assert diff == 0.0 if (gh, gw) == (4, 4) else diff > 1e-3
