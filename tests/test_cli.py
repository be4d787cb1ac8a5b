"""The installed ``vitzoo`` command: list and info."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

import vitzoo
from vitzoo.cli import main
from vitzoo.cli.info import format_info
from vitzoo.cli.validate import open_model
from vitzoo.errors import CheckpointError


def test_list_prints_matching_architectures(capsys):
    assert main(["list", "deit_base*"]) == 0
    assert capsys.readouterr().out.split() == [
        "deit_base_distilled_patch16_224", "deit_base_distilled_patch16_384",
        "deit_base_patch16_224", "deit_base_patch16_384"]


def test_list_with_no_match_says_so_and_exits_1(capsys):
    assert main(["list", "resnet*"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "nothing matches resnet*" in captured.err


def test_list_pretrained_and_aliases(capsys):
    main(["list", "--pretrained", "vit_tiny_patch16_224"])
    assert capsys.readouterr().out.split() == [
        "vit_tiny_patch16_224.augreg_in21k_ft_in1k", "vit_tiny_patch16_224.augreg_in21k"]
    main(["list", "--aliases", "vit_huge_patch14_224"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows == [["ViT-H_14", "vit_huge_patch14_224"], ["vit_h14", "vit_huge_patch14_224"]]
    main(["list", "--aliases", "vit_so400m_patch14_siglip_384"])  # an alias of a weight set
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["siglip_so400m_patch14_384", "vit_so400m_patch14_siglip_384.webli"] in rows


def test_info_shows_architecture_params_gflops_and_tags(capsys):
    assert main(["info", "vit_b16"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("vit_base_patch16_224  (VisionTransformer)")
    assert "768 / 12 blocks, 12 heads, MLP 3072" in out
    assert "parameters     86,567,656" in out
    assert "GFLOPs         17.56" in out
    assert "augreg2_in21k_ft_in1k (default)" in out
    assert "GELU exact (erf), LayerNorm eps 1e-06" in out


def test_info_json(capsys):
    main(["info", "deit_tiny_distilled_patch16_224", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["num_params"] == 5_910_800
    assert data["config"]["distilled"] is True
    assert data["tags"] == ["fb_in1k"]


def test_unknown_model_is_a_clear_error_with_exit_status_2(capsys):
    assert main(["info", "vit_bsae_patch16_224"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitzoo: error: unknown model 'vit_bsae_patch16_224'. Did you mean "
                          "'vit_base_patch16_224'")


def test_no_subcommand_prints_usage():
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_the_console_script_is_installed_and_runs():
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("vitzoo") == "vitzoo.cli:main"
    result = subprocess.run([sys.executable, "-m", "vitzoo", "list", "vit_huge_patch14_2*"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["vit_huge_patch14_224"]


def test_info_describes_a_hybrids_backbone(capsys):
    assert main(["info", "R50+ViT-B_16"]) == 0
    out = capsys.readouterr().out
    assert "backbone       ResNet stages (3, 4, 9), width 64, 14x14 feature map" in out
    assert "parameters     98,659,112" in out


@pytest.mark.parametrize("name", ["missing.safetensors", "missing.npz", "weights.PTH",
                                  "model.pt", "pytorch_model.bin", "runs/x/last"])
def test_a_missing_checkpoint_file_is_named_not_taken_for_a_model_name(name, tmp_path):
    path = str(tmp_path / name) if "/" not in name else name
    with pytest.raises(CheckpointError, match=f"no checkpoint file {re.escape(path)}"):
        open_model(path)


def test_predict_and_validate_name_the_missing_checkpoint(tmp_path, capsys):
    missing = tmp_path / "missing.safetensors"
    assert main(["predict", str(missing), str(tmp_path / "image.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vitzoo: error: no checkpoint file {missing}")
    assert "unknown model" not in err
    assert main(["validate", str(missing), "digits"]) == 2
    assert capsys.readouterr().err.startswith(f"vitzoo: error: no checkpoint file {missing}")


def test_info_describes_map_pooling():
    cfg = vitzoo.ViTConfig(global_pool="map", class_token=False)
    info = vitzoo.ModelInfo(name="vit_map", config=cfg, num_params=1, gflops=1.0,
                            model_class="VisionTransformer")
    assert "  pooling        attention pooling (MAP head)\n" in format_info(info)


def _numeric_options():
    import argparse

    from vitzoo.cli.main import build_parser

    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        for action in parser._actions:
            value = action.default
            numeric = action.type in (int, float) or getattr(action.type, "__name__", "") in (
                "finite_float", "_positive_int") or (
                isinstance(value, int | float | tuple | list) and not isinstance(value, bool)
                and action.nargs != 0)
            if action.option_strings and numeric:
                yield name, parser, action


def test_every_numeric_option_shows_its_default_in_help():
    found = list(_numeric_options())
    assert len(found) > 25  # finetune alone has 12: the walk found the options
    for name, parser, action in found:
        text = " ".join(parser.format_help().split())
        option = action.option_strings[-1]
        entry = text[text.index(f" {option} ", text.index("options:")):]
        nxt = re.search(r" --?[a-z][\w-]* ", entry[len(option) + 2:])
        entry = entry[: len(option) + 2 + (nxt.start() if nxt else len(entry))]
        assert "default" in entry, (name, option, entry)
    validate = " ".join(subprocess.run([sys.executable, "-m", "vitzoo", "validate", "--help"],
                                       capture_output=True, text=True, check=True).stdout.split())
    assert "--batch-size BATCH_SIZE images per forward pass (default: 128)" in validate
