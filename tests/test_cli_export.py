"""``vitzoo export MODEL OUT``: ONNX files checked in onnxruntime, torch.export programs."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import vitzoo
from vitzoo.cli import main

from conftest import random_weights, tiny_cfg

needs_onnx = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")),
    reason='needs pip install "vitzoo[export]"')


@pytest.fixture
def checkpoint(tmp_path):
    model = random_weights(vitzoo.build_model(tiny_cfg())).eval()
    return model, vitzoo.save_model(model, tmp_path / "tiny.safetensors")


def onnx_logits(path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


def eager(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


@needs_onnx
def test_export_writes_an_onnx_file_with_a_dynamic_batch_and_says_how_it_was_checked(
        checkpoint, tmp_path, capsys):
    model, path = checkpoint
    out = tmp_path / "tiny.onnx"
    assert main(["export", str(path), str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"wrote {out} (ONNX opset 20, input images (batch, 3, 32, 32))"
    assert lines[1].startswith("onnxruntime matches PyTorch to ")
    assert lines[1].endswith(" at 2x3x32x32, 3x3x32x32")
    for b in (1, 5):
        x = torch.randn(b, 3, 32, 32)
        torch.testing.assert_close(onnx_logits(out, x), eager(model, x), rtol=0, atol=1e-5)


@needs_onnx
def test_export_dynamic_size_runs_at_other_image_sizes(checkpoint, tmp_path, capsys):
    model, path = checkpoint
    out = tmp_path / "any-size.onnx"
    assert main(["export", str(path), str(out), "--dynamic-size", "--opset", "18"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"wrote {out} (ONNX opset 18, input images (batch, 3, height, width))"
    assert lines[1].endswith(" at 2x3x32x32, 3x3x32x32, 2x3x40x48")
    dynamic = vitzoo.load_model(path, dynamic_img_size=True).eval()
    for x in (torch.randn(2, 3, 32, 32), torch.randn(1, 3, 48, 24)):
        torch.testing.assert_close(onnx_logits(out, x), eager(dynamic, x), rtol=0, atol=1e-5)
    # the weights are the checkpoint's: at the native size, the fixed-size model's logits
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(onnx_logits(out, x), eager(model, x), rtol=0, atol=1e-5)


@needs_onnx
def test_export_with_a_fixed_batch_an_image_size_and_no_verification(checkpoint, tmp_path,
                                                                     capsys):
    _, path = checkpoint
    out = tmp_path / "fixed.onnx"
    assert main(["export", str(path), str(out), "--batch-size", "4", "--img-size", "48x40",
                 "--no-verify"]) == 0
    assert capsys.readouterr().out == f"wrote {out} (ONNX opset 20, input images (4, 3, 48, 40))\n"
    # position embeddings resampled at load time for 48x40: the same as load_model does
    model = vitzoo.load_model(path, img_size=(48, 40)).eval()
    x = torch.randn(4, 3, 48, 40)
    torch.testing.assert_close(onnx_logits(out, x), eager(model, x), rtol=0, atol=1e-5)


def test_export_writes_a_torch_export_program_for_pt2(checkpoint, tmp_path, capsys):
    model, path = checkpoint
    out = tmp_path / "tiny.pt2"
    assert main(["export", str(path), str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out} (torch.export program)\n"
    program = torch.export.load(out)
    for b in (1, 3):
        x = torch.randn(b, 3, 32, 32)
        torch.testing.assert_close(program.module()(x), eager(model, x), rtol=0, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_refuses_an_unknown_suffix_and_a_missing_checkpoint(checkpoint, tmp_path, capsys):
    _, path = checkpoint
    assert main(["export", str(path), str(tmp_path / "model.tflite")]) == 2
    assert "name it .onnx (ONNX) or .pt2" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.safetensors"), str(tmp_path / "m.onnx")]) == 2
    assert "no checkpoint file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.safetensors"]


def test_export_image_size_must_be_n_or_h_x_w(checkpoint, tmp_path, capsys):
    _, path = checkpoint
    with pytest.raises(SystemExit):
        main(["export", str(path), str(tmp_path / "m.onnx"), "--img-size", "big"])
    assert "'big' is not N or HxW" in capsys.readouterr().err
