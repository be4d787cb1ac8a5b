"""Every script in examples/ runs, on tiny models and files made here, offline, and does what
its docstring says: the examples cannot rot."""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import vitzoo
from vitzoo.adapters import jax_npz

from conftest import jax_model, random_weights

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PIL = pytest.importorskip("PIL.Image")


def run_example(name: str, *argv: str) -> None:
    """Run ``examples/<name>`` as ``python examples/<name> argv...`` would, in this process."""
    old = sys.argv
    sys.argv = [str(EXAMPLES / name), *argv]
    try:
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    finally:
        sys.argv = old


def _images(folder: Path, count: int, size: int = 32, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        path = folder / f"{i}.png"
        PIL.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _tiny_classifier(path: Path, num_classes: int = 2, **overrides) -> Path:
    model = vitzoo.create_model("vit_ti16", img_size=32, patch_size=8, depth=2,
                                num_classes=num_classes, **overrides)
    return vitzoo.save_model(random_weights(model, scale=0.05), path)


def test_every_example_is_tested():
    tested = {"finetune_folder.py", "extract_features.py", "convert_google.py",
              "export_onnx.py", "attention_map.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_finetune_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for split, count in (("train", 6), ("val", 2)):
        for label in ("cats", "dogs"):
            _images(tmp_path / "pets" / split / label, count, seed=hash((split, label)) % 99)
    model = _tiny_classifier(tmp_path / "tiny.safetensors")
    run_example("finetune_folder.py", str(tmp_path / "pets"), "--model", str(model),
                "--steps", "3", "--batch-size", "4", "--output", "runs/pets")
    out = capsys.readouterr().out
    assert "top-1 on" in out and "after 3 steps" in out
    best = vitzoo.load_model(tmp_path / "runs" / "pets" / "best.safetensors")
    assert best.pretrained_cfg["label_names"] == ["cats", "dogs"]


def test_extract_features(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    dino = vitzoo.create_model("vit_small_patch14_reg4_dinov2", img_size=28, depth=2,
                               embed_dim=48, num_heads=2, num_classes=0)
    checkpoint = vitzoo.save_model(random_weights(dino, scale=0.05), tmp_path / "dino.safetensors")
    images = _images(tmp_path / "photos", 2, size=40)
    run_example("extract_features.py", *map(str, images), "--model", str(checkpoint),
                "--layers", "2", "--size", "28", "--out", "feats.safetensors")
    feats = load_file(str(tmp_path / "feats.safetensors"))
    assert sorted(feats) == ["layer0.class_token", "layer0.patch_tokens",
                             "layer1.class_token", "layer1.patch_tokens"]
    assert feats["layer1.patch_tokens"].shape == (2, 4, 48)  # a 2x2 grid of 14-pixel patches
    assert feats["layer1.class_token"].shape == (2, 48)
    # the same as DINOv2's call on the model itself
    model = vitzoo.load_model(checkpoint, num_classes=0).eval()
    transform = vitzoo.create_transform({**vitzoo.resolve_model_data_config(model),
                                         "input_size": (3, 28, 28), "crop_pct": 1.0})
    batch = torch.stack([transform(vitzoo.data.open_image(p)) for p in images])
    with torch.no_grad():
        (_, (patches, cls)) = model.get_intermediate_layers(batch, n=2, return_class_token=True)
    torch.testing.assert_close(feats["layer1.patch_tokens"], patches, atol=0, rtol=0)
    torch.testing.assert_close(feats["layer1.class_token"], cls, atol=0, rtol=0)
    assert "wrote feats.safetensors" in capsys.readouterr().out


def test_convert_google(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model = jax_model()
    arrays = jax_npz.from_vitzoo({k: v.numpy() for k, v in model.state_dict().items()},
                                 num_heads=4)
    np.savez(tmp_path / "google.npz", **arrays)
    run_example("convert_google.py", "google.npz", "converted.safetensors")
    assert "verified against Google's forward pass; 2 blocks, width 32" in capsys.readouterr().out
    loaded = vitzoo.load_model(tmp_path / "converted.safetensors").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-6, rtol=0)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                    reason='needs pip install "vitzoo[export]"')
def test_export_onnx(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model = _tiny_classifier(tmp_path / "tiny.safetensors", num_classes=3)
    run_example("export_onnx.py", str(model), "tiny.onnx", "--dynamic-size")
    out = capsys.readouterr().out
    assert "wrote tiny.onnx; onnxruntime matches PyTorch" in out
    difference = float(out.split("max difference ")[1].split()[0])
    assert difference < 1e-4
    assert (tmp_path / "tiny.onnx").stat().st_size > 0


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                    reason='needs pip install "vitzoo[plot]"')
def test_attention_map(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model = _tiny_classifier(tmp_path / "tiny.safetensors", num_classes=3)
    (image,) = _images(tmp_path, 1, size=48)
    run_example("attention_map.py", str(image), "--model", str(model), "-o", "map.png")
    out = capsys.readouterr().out
    assert out.startswith("top classes: ") and "wrote map.png (4x4 patches)" in out
    with PIL.open(tmp_path / "map.png") as picture:
        assert picture.format == "PNG" and picture.size[0] > picture.size[1] > 100
