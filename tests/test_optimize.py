"""vitzoo.optimize: measured candidates, the fastest that matches eager; int8 quantization;
the --compile / --quantize options of predict and validate."""

from __future__ import annotations

import importlib
import json
import math

import pytest
import torch
from torch import nn

import vitzoo
from vitzoo.cli.main import main
from vitzoo.optimize import Candidate, OptimizeReport, optimize, quantize_int8

# Measured on this tiny config (seed 0, 10 classes): int8 logits differ from float32 by
# 0.009 at most (logits up to 0.4); the bound leaves room for another CPU's int8 kernels.
INT8_BOUND = 0.1


def tiny(**overrides) -> vitzoo.VisionTransformer:
    torch.manual_seed(0)
    cfg = vitzoo.ViTConfig(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4,
                           num_classes=10, **overrides)
    return vitzoo.build_model(cfg).eval()


@pytest.fixture(scope="module")
def example():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_optimize_returns_a_model_matching_eager_and_reports_every_candidate(example):
    model = tiny()
    with torch.no_grad():
        expected = model(example)
    chosen = optimize(model, example, rounds=2)
    report = chosen.optimize_report
    assert isinstance(report, OptimizeReport)
    assert [c.name for c in report.candidates] == ["eager", "compile"]
    assert report.applied in ("eager", "compile")
    assert report.example_shape == (2, 3, 32, 32) and report.rounds == 2
    assert report.threads == torch.get_num_threads()
    for c in report.candidates:
        assert c.error or (c.ms > 0 and math.isfinite(c.ms))
    with torch.no_grad():
        torch.testing.assert_close(chosen(example), expected, atol=1e-4, rtol=1e-4)
    line = report.describe()
    assert line.startswith(f"applied {report.applied} (") and "eager " in line
    assert "\n" not in line


def test_the_compiled_candidate_serves_inference_mode_without_compiling_again(example):
    from vitzoo.optimize import _prepare

    model = tiny()
    with torch.no_grad():  # as optimize() runs it
        runners, errors = _prepare({"compile": lambda: torch.compile(model)}, example)
        expected = model(example)
    assert errors == {}
    # Dynamo guards on the inputs' dispatch keys, which inference mode changes: without the
    # warm-up under inference_mode this call would compile again, and without freezing
    with torch._dynamo.config.patch(error_on_recompile=True):
        with torch.inference_mode():
            inferred = runners["compile"](example)
        with torch.no_grad():
            plain = runners["compile"](example)
    torch.testing.assert_close(inferred, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(plain, expected, atol=1e-5, rtol=1e-5)


def test_compile_false_measures_eager_and_int8_only(example):
    model = tiny()
    chosen = optimize(model, example, compile=False, rounds=2)
    assert chosen is model and chosen.optimize_report.applied == "eager"
    assert [c.name for c in chosen.optimize_report.candidates] == ["eager"]
    chosen = optimize(model, example, compile=False, quantize="int8", rounds=2)
    report = chosen.optimize_report
    assert [c.name for c in report.candidates] == ["eager", "int8"]
    assert report.applied in ("eager", "int8")
    assert (chosen is model) == (report.applied == "eager")


def test_the_fastest_candidate_within_tolerance_is_chosen():
    cands = [Candidate("eager", 10.0, 0.0, ok=True), Candidate("compile", 5.0, 1.0, ok=False),
             Candidate("int8", 8.0, 0.01, ok=True)]
    report = OptimizeReport(applied="int8", candidates=cands)
    assert report.speedup() == pytest.approx(1.25)
    from vitzoo.optimize import _choose
    assert _choose(cands, force_compile=False) == "int8"
    with pytest.raises(vitzoo.UnsupportedOptionError, match="compile=True"):
        _choose(cands, force_compile=True)
    assert "outside tolerance" in report.describe()


def test_optimize_rejects_bad_arguments(example):
    model = tiny()
    with pytest.raises(vitzoo.ConfigError, match="compile="):
        optimize(model, example, compile="yes")
    with pytest.raises(vitzoo.ConfigError, match="quantize="):
        optimize(model, example, quantize="int4")
    with pytest.raises(vitzoo.ConfigError, match="example"):
        optimize(model, example.numpy())


def test_int8_quantizes_the_linears_and_stays_close_to_float32(example):
    model = tiny()
    quantized = quantize_int8(model)
    assert sum(type(m) is nn.Linear for m in model.modules()) == 2 * 4 + 1  # left as it was
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    linears = [m for m in quantized.modules() if isinstance(m, dynamic)]
    assert len(linears) == 2 * 4 + 1  # qkv, proj, fc1, fc2 per block, and the head
    assert not any(type(m) is nn.Linear for m in quantized.modules())
    state = quantized.state_dict()
    assert "blocks.0.attn.qkv._packed_params._packed_params" in state
    assert "blocks.0.attn.qkv.weight" not in state
    assert quantized.patch_embed.proj.weight.dtype == torch.float32
    with torch.no_grad():
        diff = (quantized(example) - model(example)).abs().max().item()
    assert 0 < diff < INT8_BOUND


def test_int8_refuses_a_model_off_the_cpu():
    model = tiny().to("meta")
    with pytest.raises(vitzoo.UnsupportedOptionError, match="CPU"):
        quantize_int8(model)


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    torch.manual_seed(0)
    cfg = vitzoo.ViTConfig(img_size=8, patch_size=4, in_chans=1, embed_dim=32, depth=2,
                           num_heads=2, num_classes=10)
    model = vitzoo.build_model(cfg)
    model.pretrained_cfg = {"mean": (0.5,), "std": (0.5,), "crop_pct": 1.0}
    return vitzoo.save_model(model, tmp_path_factory.mktemp("m") / "digits.safetensors")


def test_validate_and_predict_take_the_optimize_options(digits_model, tmp_path, capsys):
    assert main(["validate", str(digits_model), "digits", "--batch-size", "64"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["validate", str(digits_model), "digits", "--batch-size", "64",
                 "--quantize", "int8"]) == 0
    captured = capsys.readouterr()
    quantized = json.loads(captured.out)
    assert captured.err.startswith("optimize: applied ") and "int8 " in captured.err
    assert quantized["count"] == plain["count"] == 359
    assert abs(quantized["top1"] - plain["top1"]) <= 5.0
    from PIL import Image
    image = tmp_path / "digit.png"
    Image.new("L", (8, 8), color=128).save(image)
    assert main(["predict", str(digits_model), str(image), "--top-k", "2", "--compile"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{image}: ") and captured.out.count("%") == 2
    assert "compile " in captured.err or "compile failed" in captured.err


def test_evaluation_calls_no_dropout_or_drop_path_and_training_still_does(example):
    from vitzoo.layers import DropPath
    model = tiny(drop_rate=0.1, pos_drop_rate=0.1, proj_drop_rate=0.1, attn_drop_rate=0.1,
                 drop_path_rate=0.1)
    calls: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Dropout, DropPath)):
            module.register_forward_hook(lambda m, i, o, name=name: calls.append(name))
    with torch.no_grad():
        model.eval()(example)
        assert calls == []
        model.train()(example)
    assert {"pos_drop", "head_drop", "blocks.0.mlp.drop1", "blocks.0.mlp.drop2",
            "blocks.0.attn.proj_drop", "blocks.1.drop_path1"} <= set(calls)


def test_candidates_are_timed_in_a_shuffled_order_each_round():
    """A fixed order biases the candidate that always runs after another (the allocator's and
    caches' state); the order changes between rounds and repeats from run to run."""
    optimize_module = importlib.import_module("vitzoo.optimize")  # vitzoo.optimize: the function
    calls: list[str] = []

    def runner(name):
        return lambda x: calls.append(name)

    runners = {name: runner(name) for name in ("eager", "compile", "int8")}
    times = optimize_module._time(runners, torch.zeros(1), rounds=8)
    assert set(times) == set(runners)
    rounds = [tuple(calls[i:i + 3]) for i in range(0, 24, 3)]
    assert all(sorted(r) == sorted(runners) for r in rounds) and len(set(rounds)) > 1
    calls.clear()
    optimize_module._time(runners, torch.zeros(1), rounds=8)
    assert [tuple(calls[i:i + 3]) for i in range(0, 24, 3)] == rounds
