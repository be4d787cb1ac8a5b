"""Export: ONNX files run in onnxruntime, ``torch.export`` programs and ``torch.compile`` graphs
give the eager model's outputs, at several batch sizes and (``dynamic_img_size``) image sizes.

The ONNX tests skip when the ``export`` extra (onnx, onnxscript, onnxruntime) is not installed.
"""

from __future__ import annotations

import copy
import importlib.util
import sys

import pytest
import torch

import vitzoo
from vitzoo import export
from vitzoo.errors import (
    ConfigError,
    ExportError,
    ImageSizeError,
    MissingDependencyError,
    VerificationError,
)

from conftest import random_weights, tiny_cfg

HAS_ONNX = all(importlib.util.find_spec(m) is not None
               for m in ("onnx", "onnxscript", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason='needs pip install "vitzoo[export]"')


def tiny(**overrides) -> vitzoo.VisionTransformer:
    """2 blocks, 32 wide, 32x32 images in 8x8 patches, random weights, eval mode."""
    return random_weights(vitzoo.build_model(tiny_cfg(**overrides))).eval()


def batch(b: int, h: int = 32, w: int = 32, seed: int = 3) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def eager(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def run_onnx(path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


def hide(monkeypatch, *names: str) -> None:
    """Make ``import name`` fail, as if the package were not installed."""
    for name in names:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)


# -- torch.export ---------------------------------------------------------------------------------
def test_exported_program_with_a_dynamic_batch_equals_eager_at_two_batch_sizes():
    model = tiny()
    program = export.export_program(model)
    for b in (1, 3):
        x = batch(b)
        torch.testing.assert_close(program.module()(x), eager(model, x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("strict", [False, True])  # non-strict tracing, and TorchDynamo's
def test_exported_program_of_a_dynamic_size_model_runs_at_other_image_sizes(strict):
    model = tiny(dynamic_img_size=True)
    program = export.export_program(model, dynamic_size=True, strict=strict)
    for b, h, w in ((2, 32, 32), (1, 48, 24), (3, 40, 56)):
        x = batch(b, h, w)
        torch.testing.assert_close(program.module()(x), eager(model, x), rtol=0, atol=1e-6)


def test_exported_program_of_a_dynamic_size_hybrid_runs_at_other_image_sizes():
    model = tiny(patch_size=2, backbone_layers=(), backbone_width=32, dynamic_img_size=True)
    program = export.export_program(model, dynamic_size=True)  # traced at 32x32
    x = batch(2, 38, 30)  # "SAME" pads differently; eager and the ONNX file take it
    torch.testing.assert_close(program.module()(x), eager(model, x), rtol=0, atol=1e-6)


def test_exported_program_of_a_dynamic_size_sincos_model_runs_at_other_image_sizes():
    model = tiny(dynamic_img_size=True, pos_embed="sincos")
    program = export.export_program(model, dynamic_size=True)  # checks 40x48 after 32x32
    x = batch(1, 48, 24)
    torch.testing.assert_close(program.module()(x), eager(model, x), rtol=0, atol=1e-6)


def test_a_program_that_fails_at_a_checked_shape_is_a_verification_error(monkeypatch):
    def one_channel(x, model, dims):
        return [x, torch.randn(2, 1, 32, 32)]

    monkeypatch.setattr(export, "_check_shapes", one_channel)
    with pytest.raises(VerificationError, match=r"program of .* fails at input shape "
                                                r"\(2, 1, 32, 32\)"):
        export.export_program(tiny())


def test_a_program_that_differs_from_the_model_is_a_verification_error():
    model = tiny()
    program = export.export_program(model, verify=False)  # shares the model's parameters
    moved = copy.deepcopy(model)
    with torch.no_grad():
        moved.head.bias += 1e-3
    with pytest.raises(VerificationError, match=r"differs from the model by 0\.001 \(> 1e-05\) "
                                                r"at input shape \(2, 3, 32, 32\)"):
        export._check_program(program, moved, [batch(2)], export.PROGRAM_ATOL)


def test_a_fixed_batch_program_refuses_another_batch_size():
    program = export.export_program(tiny(), batch_size=2, dynamic_batch=False)
    program.module()(batch(2))
    with pytest.raises(Exception, match="2"):
        program.module()(batch(3))


def test_dynamic_size_needs_a_dynamic_img_size_model():
    with pytest.raises(ConfigError, match="dynamic_img_size=True"):
        export.export_program(tiny(), dynamic_size=True)


def test_export_restores_the_training_mode_and_checks_the_image_size():
    model = tiny().train()
    export.export_program(model)
    assert model.training
    with pytest.raises(ImageSizeError, match="48x48"):
        export.export_program(model, img_size=48)
    assert model.training


# -- torch.compile --------------------------------------------------------------------------------
@pytest.fixture
def fresh_dynamo():
    """No compiled graph of another test is reused or counted as a recompilation."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.usefixtures("fresh_dynamo")
def test_compiled_model_with_fullgraph_equals_eager():
    model = tiny()
    compiled = torch.compile(model, fullgraph=True)
    x = batch(2)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(model, x), rtol=0, atol=1e-5)


@pytest.mark.usefixtures("fresh_dynamo")
def test_compiled_dynamic_size_model_with_fullgraph_is_one_graph_equal_to_eager_at_two_sizes():
    model = tiny(dynamic_img_size=True)
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    # grids 6x5 and 3x7 (neither row nor column count the native 4): one graph serves both
    with torch._dynamo.config.patch(error_on_recompile=True), torch.no_grad():
        for x in (batch(2, 48, 40), batch(3, 24, 56)):
            torch.testing.assert_close(compiled(x), eager(model, x), rtol=0, atol=1e-5)


# -- ONNX -----------------------------------------------------------------------------------------
@needs_onnx
def test_onnx_file_matches_eager_at_two_batch_sizes(tmp_path):
    model = tiny()
    result = export.export_onnx(model, tmp_path / "model.onnx")
    assert result.path == tmp_path / "model.onnx"
    assert result.input_shape == ("batch", 3, 32, 32)
    assert result.opset == 20  # PyTorch 2.13's default
    assert result.verified and result.max_abs_diff <= 1e-5
    assert result.checked_shapes == [(2, 3, 32, 32), (3, 3, 32, 32)]
    for b in (1, 4):
        x = batch(b)
        torch.testing.assert_close(run_onnx(result.path, x), eager(model, x), rtol=0, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # nothing else left behind


@needs_onnx
@pytest.mark.parametrize("resample", ["bicubic", "scipy"])  # timm's (antialiased), Google's
def test_onnx_file_of_a_dynamic_size_model_matches_eager_at_two_image_sizes(tmp_path, resample):
    model = tiny(dynamic_img_size=True, pos_embed_resample=resample)
    result = export.export_onnx(model, tmp_path / "model.onnx", dynamic_size=True)
    assert result.input_shape == ("batch", 3, "height", "width")
    assert result.checked_shapes == [(2, 3, 32, 32), (3, 3, 32, 32), (2, 3, 40, 48)]
    # a grid taller and narrower than the native 4x4, and one smaller both ways
    for x in (batch(1, 48, 24), batch(3, 16, 16)):
        torch.testing.assert_close(run_onnx(result.path, x), eager(model, x), rtol=0, atol=1e-5)


@needs_onnx
def test_onnx_file_of_a_padding_model_takes_sizes_that_are_not_whole_patches(tmp_path):
    model = tiny(dynamic_img_size=True, dynamic_img_pad=True)
    result = export.export_onnx(model, tmp_path / "model.onnx", dynamic_size=True)
    for x in (batch(2, 37, 29), batch(1, 9, 17)):
        torch.testing.assert_close(run_onnx(result.path, x), eager(model, x), rtol=0, atol=1e-5)


@needs_onnx
def test_onnx_file_of_a_dynamic_size_hybrid_matches_eager_at_two_image_sizes(tmp_path):
    # the ResNet stem alone (stride 4, TF "SAME" padding), then 2x2 patches: stride 8; the
    # stages add nothing here but export time (30 s for one with dynamic sizes)
    model = tiny(patch_size=2, backbone_layers=(), backbone_width=32, dynamic_img_size=True)
    result = export.export_onnx(model, tmp_path / "hybrid.onnx", dynamic_size=True)
    assert result.checked_shapes == [(2, 3, 32, 32), (3, 3, 32, 32), (2, 3, 40, 48)]
    for x in (batch(2, 48, 24), batch(1, 38, 30)):  # 38x30: "SAME" pads to a 10x8 map
        torch.testing.assert_close(run_onnx(result.path, x), eager(model, x), rtol=0, atol=1e-5)


@needs_onnx
def test_onnx_file_of_a_deit_model_without_a_head_gives_its_features(tmp_path):
    model = tiny(distilled=True, num_classes=0)
    result = export.export_onnx(model, tmp_path / "deit.onnx")
    import onnx

    assert [o.name for o in onnx.load(result.path).graph.output] == ["features"]
    x = batch(2)
    torch.testing.assert_close(run_onnx(result.path, x), eager(model, x), rtol=0, atol=1e-5)


@needs_onnx
def test_onnx_file_of_a_features_only_model_gives_every_map(tmp_path):
    import onnx
    import onnxruntime

    model = vitzoo.create_model("vit_tiny_patch16_224", features_only=True, out_indices=2,
                                depth=3, img_size=32, embed_dim=32, num_heads=2).eval()
    result = export.export_onnx(model, tmp_path / "features.onnx")
    graph = onnx.load(result.path).graph
    assert [o.name for o in graph.output] == ["features_0", "features_1"]
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = batch(3)
    got = session.run(None, {"images": x.numpy()})
    for a, e in zip(got, eager(model, x), strict=True):  # blocks 1 and 2, (3, 32, 2, 2)
        torch.testing.assert_close(torch.from_numpy(a), e, rtol=0, atol=1e-5)


@needs_onnx
def test_onnx_with_a_fixed_batch_and_opset(tmp_path):
    import onnx

    result = export.export_onnx(tiny(), tmp_path / "fixed.onnx", batch_size=3,
                                dynamic_batch=False, opset=18)
    assert result.input_shape == (3, 3, 32, 32)
    assert result.checked_shapes == [(3, 3, 32, 32)]
    assert {o.domain: o.version for o in onnx.load(result.path).opset_import}[""] == 18


@needs_onnx
def test_onnx_with_external_weights_writes_both_files_and_runs(tmp_path):
    model = tiny()
    result = export.export_onnx(model, tmp_path / "big.onnx", external_data=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    import onnx

    graph = onnx.load(result.path, load_external_data=False).graph
    external = {t.name for t in graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL}
    assert "patch_embed.proj.weight" in external
    assert all(e.value == "big.onnx.data" for t in graph.initializer if t.name in external
               for e in t.external_data if e.key == "location")
    x = batch(2)
    torch.testing.assert_close(run_onnx(result.path, x), eager(model, x), rtol=0, atol=1e-5)


@needs_onnx
def test_check_onnx_measures_the_difference_to_the_model(tmp_path):
    model = tiny()
    result = export.export_onnx(model, tmp_path / "model.onnx", verify=False)
    with torch.no_grad():
        model.head.bias += 1e-3  # the model moves away from the file by exactly that
    x = [batch(2)]
    assert export.check_onnx(result.path, model, x, atol=1e-2) == pytest.approx(1e-3, abs=1e-5)
    with pytest.raises(VerificationError, match=f"^{result.path}: onnxruntime differs from "
                                                r"PyTorch by 0\.001 \(> 0\.0001\)"):
        export.check_onnx(result.path, model, x)


@needs_onnx
def test_check_onnx_turns_an_onnxruntime_failure_into_a_verification_error(tmp_path):
    model = tiny()
    result = export.export_onnx(model, tmp_path / "model.onnx", batch_size=2,
                                dynamic_batch=False)
    with pytest.raises(VerificationError, match=f"^{result.path}: onnxruntime cannot run the "
                                                r"file at input shape \(3, 3, 32, 32\)"):
        export.check_onnx(result.path, model, [batch(3)])


@needs_onnx
def test_onnx_file_of_a_dynamic_size_sincos_model_matches_eager_at_other_sizes(tmp_path):
    model = tiny(dynamic_img_size=True, pos_embed="sincos")
    result = export.export_onnx(model, tmp_path / "model.onnx", dynamic_size=True)
    x = batch(1, 48, 24)
    torch.testing.assert_close(run_onnx(result.path, x), eager(model, x), rtol=0, atol=1e-5)


@needs_onnx
def test_a_failed_verification_keeps_the_old_file_and_leaves_nothing_else(tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"the old file")
    real = export.check_onnx
    checked = []

    def off_by_a_little(path, model, inputs, *, atol):
        checked.append(path)
        return real(path, model, inputs, atol=-1.0)  # no difference passes

    monkeypatch.setattr(export, "check_onnx", off_by_a_little)
    with pytest.raises(VerificationError, match=f"^{target}: onnxruntime differs from PyTorch by "
                                                r".* at input shape \(2, 3, 32, 32\); nothing "
                                                "was written"):
        export.export_onnx(tiny(), target)
    assert checked and checked[0] != target  # the staged copy was checked, not the target
    assert target.read_bytes() == b"the old file"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


@needs_onnx
def test_an_exporter_failure_is_an_export_error_and_writes_nothing(tmp_path, monkeypatch):
    def broken(*args, dynamo=True, **kwargs):
        raise RuntimeError("unsupported operator aten::something\nmore details")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(ExportError, match="could not export .*unsupported operator "
                                          "aten::something$"):
        export.export_onnx(tiny(), tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


@needs_onnx
def test_without_onnxruntime_the_file_is_written_unverified_unless_verify_is_asked(
        tmp_path, monkeypatch):
    hide(monkeypatch, "onnxruntime")
    result = export.export_onnx(tiny(), tmp_path / "model.onnx")
    assert result.path.is_file() and not result.verified and result.checked_shapes == []
    with pytest.raises(MissingDependencyError, match=r'onnxruntime.*pip install "vitzoo\[export'):
        export.export_onnx(tiny(), tmp_path / "other.onnx", verify=True)
    assert not (tmp_path / "other.onnx").exists()


def test_without_onnx_the_error_names_the_export_extra(tmp_path, monkeypatch):
    hide(monkeypatch, "onnxscript")
    with pytest.raises(MissingDependencyError,
                       match=r'ONNX export needs onnxscript, not installed: pip install '
                             r'"vitzoo\[export\]"'):
        export.export_onnx(tiny(), tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_export_takes_vitzoo_models_only(tmp_path):
    with pytest.raises(ConfigError, match="Linear is not a vitzoo model"):
        export.export_program(torch.nn.Linear(2, 2))
