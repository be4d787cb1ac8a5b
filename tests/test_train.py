"""Fine-tuning: split-invariant updates, exact resume, DDP, schedules, distillation, commands."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import vitzoo
import vitzoo.train.loop as loop
from vitzoo.cli import main
from vitzoo.data import Digits, create_transform, resolve_data_config
from vitzoo.errors import TrainingInterrupted
from vitzoo.train import PRESETS, TrainConfig, distillation_loss, evaluate, finetune, lr_factor
from vitzoo.train.config import preset_config
from vitzoo.train.optim import create_optimizer, layer_id
from vitzoo.train.sampler import StepSampler, micro_batch_for
from vitzoo.train.workflow import finetune_on

from conftest import record_figures

DATA = Path(__file__).parent / "data"

def tiny_setup(distilled: bool = False, **overrides):
    """A 2-block ViT on the digits, with random crops so augmentation is exercised."""
    torch.manual_seed(0)
    cfg = vitzoo.ViTConfig(img_size=8, patch_size=4, in_chans=1, embed_dim=16, depth=2,
                           num_heads=2, num_classes=10, distilled=distilled, **overrides)
    model = vitzoo.build_model(cfg)
    model.pretrained_cfg = {"mean": (0.5,), "std": (0.5,), "crop_pct": 1.0}
    train = torch.utils.data.Subset(Digits(train=True), range(256))
    evaluation = torch.utils.data.Subset(Digits(train=False), range(64))
    transform = create_transform(resolve_data_config(model), train=True, scale=(0.6, 1.0),
                                 hflip=0.0)
    return model, train, evaluation, transform


def _run(tmp_path, name, **cfg_kwargs):
    model, train, evaluation, transform = tiny_setup()
    base = dict(steps=20, batch_size=32, micro_batch=32, optimizer="sgd", lr=0.1,
                warmup_steps=3, eval_every=10, log_every=5)
    cfg = TrainConfig(**{**base, **cfg_kwargs})
    result = finetune(model, train, evaluation, cfg, output_dir=tmp_path / name,
                      train_transform=transform, eval_transform=transform, device="cpu")
    return model, result


def _assert_same_weights(a, b, atol):
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, atol=atol, rtol=0, msg=name)


def test_accumulation_gives_the_same_weights_as_one_big_batch(tmp_path):
    big, _ = _run(tmp_path, "big", micro_batch=32)
    accumulated, _ = _run(tmp_path, "acc", micro_batch=8)  # 4 accumulation steps of 8
    _assert_same_weights(big, accumulated, atol=1e-5)
    fresh, _, _, _ = tiny_setup()
    assert (big.head.weight - fresh.head.weight).abs().max() > 1e-3  # it did train


RECIPE = dict(steps=20, batch_size=32, micro_batch=32, optimizer="sgd", lr=0.1, warmup_steps=3,
              eval_every=10, log_every=5, checkpoint_every=10)


class _Crash(Exception):
    pass


def test_resume_after_step_10_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    straight, result = _run(tmp_path, "straight", **RECIPE)
    real_save_checkpoint = loop.save_checkpoint

    def save_then_crash(state, *args, **kwargs):
        real_save_checkpoint(state, *args, **kwargs)
        if state.step == 10:
            raise _Crash  # the run dies right after its step-10 checkpoint

    monkeypatch.setattr(loop, "save_checkpoint", save_then_crash)
    with pytest.raises(_Crash):
        _run(tmp_path, "split", **RECIPE)
    monkeypatch.setattr(loop, "save_checkpoint", real_save_checkpoint)
    model, train, evaluation, transform = tiny_setup()  # fresh weights: all comes from disk
    resumed = finetune(model, train, evaluation, TrainConfig(**RECIPE),
                       output_dir=tmp_path / "split", train_transform=transform,
                       eval_transform=transform, resume=True, device="cpu")
    assert resumed.step == 20
    _assert_same_weights(straight, model, atol=0)
    rows = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text()
            .splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [5, 10, 15, 20]
    assert resumed.final["top1"] == pytest.approx(result.final["top1"])
    with pytest.raises(vitzoo.VitzooError, match="nothing to resume"):
        finetune(model, train, evaluation, TrainConfig(**RECIPE), output_dir=tmp_path / "none",
                 resume=True, device="cpu")


def ddp_setup(distill: bool = False):
    """The run that the torchrun tests make in one process and in two (_ddp_worker.py)."""
    model, train, evaluation, transform = tiny_setup(distilled=distill)
    teacher = tiny_setup()[0] if distill else None
    cfg = TrainConfig(steps=6, batch_size=16, micro_batch=4, optimizer="sgd", lr=0.1,
                      warmup_steps=2, eval_every=3, log_every=1,
                      distill="soft" if distill else None)
    return model, train, evaluation, transform, teacher, cfg


def _torchrun(*args):
    """Two processes on this machine over loopback, so that a host name that does not resolve
    (a bare container) cannot stall the rendezvous."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--local-addr=127.0.0.1", "--nproc_per_node=2", *map(str, args)],
                   check=True, env=env, capture_output=True, timeout=180)


def _torchrun_worker(output_dir, *args):
    _torchrun(Path(__file__).with_name("_ddp_worker.py"), output_dir, Path(__file__).parent, *args)
    return vitzoo.load_model(output_dir / "last.safetensors")


def test_two_process_torchrun_matches_one_process(tmp_path):
    single = tmp_path / "single"
    model, train, evaluation, transform, _, cfg = ddp_setup()
    finetune(model, train, evaluation, cfg, output_dir=single, train_transform=transform,
             eval_transform=transform, device="cpu")
    ddp = tmp_path / "ddp"
    ddp_model = _torchrun_worker(ddp)
    _assert_same_weights(model, ddp_model, atol=1e-5)
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    lines = (ddp / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len((single / "metrics.jsonl").read_text().splitlines())  # rank 0 only
    assert (ddp / "metrics.csv").read_text().count("step,split") == 1


def test_two_process_distillation_matches_one_process(tmp_path):
    # DDP wraps a DistillationStudent, so its gradient hooks see the distillation forward
    model, train, evaluation, transform, teacher, cfg = ddp_setup(distill=True)
    before = model.head_dist.weight.clone()
    finetune(model, train, evaluation, cfg, output_dir=tmp_path / "single", teacher=teacher,
             train_transform=transform, eval_transform=transform, device="cpu")
    assert not torch.equal(before, model.head_dist.weight)
    _assert_same_weights(model, _torchrun_worker(tmp_path / "ddp", "distill"), atol=1e-5)


def test_step_sampler_splits_global_batches_without_changing_them():
    whole = StepSampler(100, batch_size=32, micro_batch=32, steps=4, seed=3)
    parts = [StepSampler(100, batch_size=32, micro_batch=8, world=2, rank=r, steps=4, seed=3)
             for r in (0, 1)]
    flat = [list(b) for b in whole]
    micro = [list(b) for b in parts[0]], [list(b) for b in parts[1]]
    for step in range(4):
        joined = sum(micro[0][2 * step:2 * step + 2], []) + sum(micro[1][2 * step:2 * step + 2], [])
        assert joined == flat[step]
    epoch0 = torch.cat([whole.global_batch(s) for s in range(3)])
    assert len(set(epoch0.tolist())) == 96  # no repeats inside an epoch
    with pytest.raises(ValueError, match="must split into 2 process"):
        StepSampler(100, batch_size=30, micro_batch=8, world=2, steps=1)


def test_schedule_warms_up_then_decays_to_zero():
    values = [lr_factor(s, total=10, warmup=2) for s in range(10)]
    assert values[:2] == [0.5, 1.0]
    assert values[2] == pytest.approx(1.0)
    assert values[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert lr_factor(10, total=10, warmup=2) == pytest.approx(0.0)
    assert lr_factor(6, total=10, warmup=2, schedule="linear") == pytest.approx(0.5)


def test_layer_decay_and_no_weight_decay_groups():
    model = vitzoo.build_model(vitzoo.ViTConfig(img_size=8, patch_size=4, embed_dim=16, depth=2,
                                                num_heads=2, num_classes=3))
    cfg = TrainConfig(optimizer="adamw", lr=1.0, weight_decay=0.1, layer_decay=0.5)
    optimizer = create_optimizer(model, cfg)
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert by_param[id(names["pos_embed"])]["lr"] == 0.5 ** 3
    assert by_param[id(names["blocks.0.attn.qkv.weight"])]["lr"] == 0.5 ** 2
    assert by_param[id(names["blocks.1.attn.qkv.weight"])]["lr"] == 0.5
    assert by_param[id(names["head.weight"])]["lr"] == 1.0
    assert by_param[id(names["blocks.0.attn.qkv.weight"])]["weight_decay"] == 0.1
    assert by_param[id(names["blocks.0.attn.qkv.bias"])]["weight_decay"] == 0.0
    assert by_param[id(names["cls_token"])]["weight_decay"] == 0.0
    assert layer_id("norm.weight", 2) == 3 and layer_id("patch_embed.proj.weight", 2) == 0


def test_distillation_losses_follow_deit():
    torch.manual_seed(0)
    cls, dist, teacher = torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5)
    labels = torch.tensor([0, 1, 2, 3])
    hard = distillation_loss(cls, dist, teacher, labels, kind="hard", alpha=0.5)
    expected = 0.5 * F.cross_entropy(cls, labels, reduction="none") + 0.5 * F.cross_entropy(
        dist, teacher.argmax(1), reduction="none")
    torch.testing.assert_close(hard, expected)
    soft = distillation_loss(cls, dist, teacher, labels, kind="soft", alpha=0.3, tau=2.0)
    p_t = (teacher / 2).softmax(1)
    kl = (p_t * (p_t.log() - (dist / 2).log_softmax(1))).sum(1) * 4 / 5  # DeiT: tau^2 KL / C
    torch.testing.assert_close(soft, 0.7 * F.cross_entropy(cls, labels, reduction="none")
                               + 0.3 * kl)


def test_distillation_loss_means_equal_deits_own_losses():
    # DeiT's DistillationLoss (facebookresearch/deit, losses.py) run on fixed logits by
    # tests/fixtures/make_deit_distillation_fixture.py: soft and hard, several alpha / tau,
    # with and without label smoothing of the base cross-entropy.
    with safe_open(DATA / "deit_distillation.safetensors", "pt") as f:
        cases = json.loads(f.metadata()["cases"])
        data = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    assert len(cases) == len(data["losses"]) == 5
    for case, deit in zip(cases, data["losses"], strict=True):
        per_sample = distillation_loss(data["cls_logits"], data["dist_logits"],
                                       data["teacher_logits"], data["labels"], kind=case["kind"],
                                       alpha=case["alpha"], tau=case["tau"],
                                       label_smoothing=case["label_smoothing"])
        assert per_sample.shape == (6,)
        # DeiT sums, vitzoo averages: equal to two float32 ulps
        torch.testing.assert_close(per_sample.mean(), deit, rtol=2.5e-7, atol=0, msg=str(case))


def test_distilled_training_runs_with_a_teacher(tmp_path):
    student, train, evaluation, transform = tiny_setup(distilled=True)
    teacher, _, _, _ = tiny_setup()
    cfg = TrainConfig(steps=3, batch_size=16, micro_batch=8, optimizer="adamw", lr=1e-3,
                      warmup_steps=1, eval_every=3, distill="hard")
    before = student.head_dist.weight.clone()
    finetune(student, train, evaluation, cfg, output_dir=tmp_path, train_transform=transform,
             eval_transform=transform, teacher=teacher, device="cpu")
    assert not torch.equal(before, student.head_dist.weight)
    with pytest.raises(vitzoo.VitzooError, match="needs a teacher"):
        finetune(student, train, evaluation, cfg, output_dir=tmp_path / "x",
                 train_transform=transform, device="cpu")


def test_evaluate_counts_top1_and_top5():
    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x[:, 0] + self.w  # the image is the logits

    logits = torch.eye(6)[[0, 1, 2, 3]] * 10 + torch.arange(6) * 0.1
    data = list(zip(logits.unsqueeze(1), torch.tensor([0, 1, 5, 4]), strict=True))
    metrics = evaluate(Fixed(), data, batch_size=3)
    assert metrics["top1"] == 50.0 and metrics["top5"] == 100.0 and metrics["count"] == 4
    expected = F.cross_entropy(logits, torch.tensor([0, 1, 5, 4])).item()
    assert metrics["loss"] == pytest.approx(expected, rel=1e-6)


def test_run_writes_checkpoints_metrics_and_curves(tmp_path):
    _, result = _run(tmp_path, "files", steps=10, eval_every=5)
    names = {p.name for p in (tmp_path / "files").iterdir()}
    assert {"best.safetensors", "last.safetensors", "train_state.pt", "metrics.csv",
            "metrics.jsonl", "train_config.json", "curves.png"} <= names
    best = vitzoo.load_model(tmp_path / "files" / "best.safetensors")
    assert best.cfg.embed_dim == 16
    header = (tmp_path / "files" / "metrics.csv").read_text().splitlines()[0]
    assert header == "step,split,loss,top1,top5,lr,images_per_s,time"
    assert result.best["top1"] >= result.final["top1"] or result.best["step"] == 10


def _metrics_file(path: Path) -> Path:
    rows = [{"step": step, "split": "train", "loss": 2.0 / (1 + step)} for step in range(0, 50, 5)]
    rows += [{"step": 20, "split": "eval", "loss": 1.0, "top1": 61.5},
             {"step": 40, "split": "eval", "loss": 0.9, "top1": 58.25}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_the_curves_have_titled_axes_ticks_and_a_grid(tmp_path, monkeypatch):
    from PIL import Image

    from vitzoo.train.metrics import plot_curves

    figures = record_figures(monkeypatch)
    png = plot_curves(_metrics_file(tmp_path / "metrics.jsonl"), tmp_path / "curves.png")
    with Image.open(png) as picture:
        assert picture.format == "PNG" and picture.size == (1080, 432)  # 9 x 3.6 in, 120 dpi
    (figure,) = figures
    loss, top1 = figure.axes
    assert (loss.get_title(), loss.get_xlabel(), loss.get_ylabel()) == (
        "training loss", "step", "loss")
    assert (top1.get_title(), top1.get_xlabel(), top1.get_ylabel()) == (
        "evaluation top-1", "step", "top-1 (%)")
    for axes in (loss, top1):
        assert all(line.get_visible() for line in axes.get_xgridlines())
        assert len([t for t in axes.get_xticklabels() if t.get_text()]) >= 3
        assert len([t for t in axes.get_yticklabels() if t.get_text()]) >= 3
    assert list(loss.lines[0].get_xdata()) == list(range(0, 50, 5))
    assert list(top1.lines[0].get_ydata()) == [61.5, 58.25]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "metrics.jsonl"]


def test_without_matplotlib_the_curves_are_one_line_of_text(tmp_path, monkeypatch, caplog):
    from vitzoo.train.metrics import plot_curves

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with caplog.at_level("WARNING", logger="vitzoo.train.metrics"):
        assert plot_curves(_metrics_file(tmp_path / "m.jsonl"), tmp_path / "curves.png") is None
    assert caplog.messages == [
        'matplotlib is not installed (pip install "vitzoo[plot]"), so no curves.png: training '
        "loss 0.04348 at step 45; best eval top-1 61.50 % at step 20"]
    assert not (tmp_path / "curves.png").exists()


def test_finetune_validate_and_predict_commands(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["finetune", "--output", str(out), "--steps", "30", "--eval-every", "15",
                 "--warmup-steps", "5"]) == 0
    printed = capsys.readouterr().out.splitlines()
    summary = json.loads(printed[0])
    assert summary["step"] == 30 and 0 <= summary["test_top1"] <= 100
    assert printed[1].startswith("test accuracy")
    assert main(["validate", str(out / "last.safetensors"), "digits"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["count"] == 359 and metrics["top1"] == pytest.approx(summary["test_top1"],
                                                                        abs=0.01)
    examples = sorted((out / "examples").glob("*.png"))
    assert len(examples) == 4
    test_set, indices = Digits(train=False), []
    for path in examples:  # a seeded sample of the test split, each named by index and label
        index, label = re.fullmatch(r"test_(\d{3})_label_(\d)\.png", path.name).groups()
        indices.append(int(index))
        image, expected = test_set[int(index)]
        assert int(label) == expected
        np.testing.assert_array_equal(np.asarray(Image.open(path)), image[..., 0])
    assert indices != [0, 1, 2, 3]  # not the split's first (hardest) images
    assert main(["predict", str(out / "last.safetensors"), str(examples[0]), "--top-k",
                 "3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{examples[0]}: ") and line.count("%") == 3


def test_a_teacher_must_classify_the_same_classes(tmp_path):
    wrong = vitzoo.save_model(vitzoo.build_model(vitzoo.ViTConfig(
        img_size=8, patch_size=4, in_chans=1, embed_dim=16, depth=1, num_heads=2,
        num_classes=3)), tmp_path / "teacher.safetensors")
    with pytest.raises(vitzoo.VitzooError, match="predicts 3 classes, the data has 10"):
        finetune_on("digits", output_dir=tmp_path / "run", teacher=str(wrong),
                    distill="hard", steps=2, warmup_steps=1)


TINY_DIGITS = dict(embed_dim=16, depth=1, num_heads=2, drop_path_rate=0.1)  # dropout on


def _digits_run(path, **overrides):
    options = dict(steps=3, batch_size=16, micro_batch=8, warmup_steps=1, eval_every=3)
    finetune_on("digits", output_dir=path, model_overrides=TINY_DIGITS, **options, **overrides)
    return load_file(path / "last.safetensors")


def test_one_seed_gives_bit_identical_weights_from_the_initialisation_on(tmp_path):
    first, second = _digits_run(tmp_path / "a", seed=5), _digits_run(tmp_path / "b", seed=5)
    other = _digits_run(tmp_path / "c", seed=6)
    assert first.keys() == second.keys() == other.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert not any(torch.equal(first[name], other[name]) for name in first
                   if name.startswith("blocks."))


def test_fewer_steps_scale_the_presets_warmup_and_intervals():
    assert PRESETS["digits"].warmup_steps == 200 and PRESETS["digits"].steps == 2000
    short = preset_config("digits", steps=100)
    assert (short.steps, short.warmup_steps, short.eval_every) == (100, 10, 25)
    tiny = preset_config("digits", steps=5)
    assert (tiny.warmup_steps, tiny.eval_every) == (1, 1)
    assert preset_config("digits", steps=1).warmup_steps == 0
    longer = preset_config("vit", steps=20_000)
    assert (longer.warmup_steps, longer.eval_every) == (1000, 1000)
    given = preset_config("digits", steps=100, warmup_steps=7, eval_every=50)
    assert (given.warmup_steps, given.eval_every) == (7, 50)
    assert preset_config("digits", lr=1e-3) == PRESETS["digits"].replace(lr=1e-3)


def test_finetune_with_few_steps_runs_on_the_default_warmup(tmp_path, capsys):
    assert main(["finetune", "--output", str(tmp_path / "run"), "--steps", "5"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["step"] == 5
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert (saved["steps"], saved["warmup_steps"], saved["eval_every"]) == (5, 1, 1)


def test_an_impossible_warmup_says_how_to_fix_it(tmp_path, capsys):
    assert main(["finetune", "--output", str(tmp_path / "run"), "--steps", "5",
                 "--warmup-steps", "200"]) == 2
    assert capsys.readouterr().err.strip() == (
        "vitzoo: error: warmup_steps=200 must be less than steps=5: pass --warmup-steps N "
        "with N < 5")


def test_the_micro_batch_adapts_to_each_process_share():
    assert micro_batch_for(64, micro_batch=64, world=1) == 64
    assert micro_batch_for(64, micro_batch=64, world=2) == 32  # the digits preset on 2
    assert micro_batch_for(512, micro_batch=64, world=8) == 64
    assert micro_batch_for(512, micro_batch=48, world=8) == 32  # largest divisor of 64 <= 48
    assert micro_batch_for(100, micro_batch=64, world=2) == 50
    assert micro_batch_for(84, micro_batch=8, world=2) == 7
    with pytest.raises(vitzoo.ConfigError, match=r"batch_size=63 does not split into 2 processes: "
                       r"pass --batch-size N with N a multiple of 2 \(e\.g\. 62 or 64\)"):
        micro_batch_for(63, micro_batch=64, world=2)


def test_two_process_torchrun_of_the_digits_defaults_matches_one_process(tmp_path):
    # batch 64, micro-batch 64: each of the 2 processes takes 32 in one micro-batch of 32
    options = ["finetune", "--steps", "4", "--warmup-steps", "1", "--eval-every", "4"]
    assert main([*options, "--output", str(tmp_path / "single")]) == 0
    _torchrun("-m", "vitzoo", *options, "--output", tmp_path / "ddp")
    single = vitzoo.load_model(tmp_path / "single" / "last.safetensors")
    ddp = vitzoo.load_model(tmp_path / "ddp" / "last.safetensors")
    # AdamW divides by sqrt(v), so the all-reduce's order of summation shows up larger than
    # with SGD: measured 1.3e-5 at most (one weight of 16384) with one thread, 5e-6 with two
    _assert_same_weights(single, ddp, atol=3e-5)


def _finetune(path, *, eval_data=True, **options):
    model, train, evaluation, transform = tiny_setup()
    cfg = TrainConfig(steps=4, batch_size=16, micro_batch=16, optimizer="sgd", lr=0.1,
                      warmup_steps=1, eval_every=2, log_every=1)
    return finetune(model, train, evaluation if eval_data else None, cfg, output_dir=path,
                    train_transform=transform, eval_transform=transform, device="cpu",
                    **options)


def test_an_existing_run_is_refused_unless_resumed_or_overwritten(tmp_path):
    run = tmp_path / "run"
    _finetune(run)
    (run / "notes.txt").write_text("mine")
    before = (run / "last.safetensors").read_bytes()
    with pytest.raises(vitzoo.VitzooError, match=r"already holds a run .*--resume .*--overwrite"):
        _finetune(run)
    assert (run / "last.safetensors").read_bytes() == before  # untouched
    with pytest.raises(vitzoo.ConfigError, match="not both"):
        _finetune(run, resume=True, overwrite=True)
    _finetune(run, eval_data=False, overwrite=True)  # starts over: no evaluation this time
    names = {p.name for p in run.iterdir()}
    assert "best.safetensors" not in names and "notes.txt" in names  # only the run's files go
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    with pytest.raises(vitzoo.VitzooError, match="already holds a run"):
        finetune_on("digits", output_dir=run, steps=2, warmup_steps=1)


def test_an_output_that_is_a_file_asks_for_a_directory(tmp_path, capsys):
    existing = tmp_path / "file.txt"
    existing.write_text("")
    with pytest.raises(vitzoo.VitzooError, match=r"file.txt is a file: pass a directory"):
        _finetune(existing)
    with pytest.raises(vitzoo.VitzooError, match=r"file.txt is a file: pass a directory"):
        _finetune(existing / "run")
    assert main(["finetune", "--output", str(existing), "--steps", "2"]) == 2
    assert capsys.readouterr().err.startswith(f"vitzoo: error: {existing} is a file: pass a "
                                              "directory")


# Stochastic depth on, so the random state has to be restored exactly for identical weights.
STOCHASTIC = dict(steps=20, batch_size=32, micro_batch=8, optimizer="sgd", lr=0.1,
                  warmup_steps=3, eval_every=10, log_every=1, checkpoint_every=10)


def _stochastic_run(path, *, resume=False):
    model, train, evaluation, transform = tiny_setup(drop_path_rate=0.2)
    result = finetune(model, train, evaluation, TrainConfig(**STOCHASTIC), output_dir=path,
                      train_transform=transform, eval_transform=transform, resume=resume,
                      device="cpu")
    return model, result


def _stop_at_micro_batch(monkeypatch, count, error):
    """Make the ``count``-th micro-batch raise ``error`` after its forward and backward."""
    real, calls = loop._micro_step, []

    def micro_step(*args, **kwargs):
        loss = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == count:
            raise error
        return loss

    monkeypatch.setattr(loop, "_micro_step", micro_step)


def _rows(path):
    """The rows of metrics.jsonl without the timings (which differ from run to run)."""
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("time", "images_per_s")} for r in rows]


def test_ctrl_c_saves_the_last_step_and_resuming_gives_identical_weights(tmp_path, monkeypatch):
    straight, _ = _stochastic_run(tmp_path / "straight")
    _stop_at_micro_batch(monkeypatch, 13 * 4 + 2, KeyboardInterrupt)  # inside step 14
    with pytest.raises(TrainingInterrupted) as stop:
        _stochastic_run(tmp_path / "split")
    assert isinstance(stop.value, KeyboardInterrupt)
    assert stop.value.step == 13 and stop.value.output_dir == tmp_path / "split"
    saved = torch.load(tmp_path / "split" / "train_state.pt", weights_only=True)
    assert saved["step"] == 13
    assert max(r["step"] for r in _rows(tmp_path / "split")) == 13
    monkeypatch.undo()
    resumed, result = _stochastic_run(tmp_path / "split", resume=True)
    assert result.step == 20
    for (name, x), (_, y) in zip(straight.state_dict().items(), resumed.state_dict().items(),
                                 strict=True):
        assert torch.equal(x, y), name
    assert _rows(tmp_path / "split") == _rows(tmp_path / "straight")  # same losses, no repeats


def test_resuming_after_a_crash_drops_the_rows_written_after_the_checkpoint(tmp_path,
                                                                            monkeypatch):
    straight, _ = _stochastic_run(tmp_path / "straight")
    _stop_at_micro_batch(monkeypatch, 13 * 4 + 1, _Crash)  # checkpoint at 10, rows up to 13
    with pytest.raises(_Crash):
        _stochastic_run(tmp_path / "split")
    assert [r["step"] for r in _rows(tmp_path / "split") if r["split"] == "train"] == list(
        range(1, 14))
    monkeypatch.undo()
    resumed, _ = _stochastic_run(tmp_path / "split", resume=True)
    for (name, x), (_, y) in zip(straight.state_dict().items(), resumed.state_dict().items(),
                                 strict=True):
        assert torch.equal(x, y), name
    assert _rows(tmp_path / "split") == _rows(tmp_path / "straight")  # same losses, no repeats
    steps = [(r["step"], r["split"]) for r in _rows(tmp_path / "split")]
    csv_steps = [line.split(",")[:2] for line in
                 (tmp_path / "split" / "metrics.csv").read_text().splitlines()[1:]]
    assert csv_steps == [[str(step), split] for step, split in steps]


@pytest.fixture
def ctrl_c_delivered(monkeypatch):
    """Python's own Ctrl-C handler, also when the tests run as a background job (whose shell
    started them with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _sigint_as_default() -> None:  # in the child, before exec: Python installs its handler
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_waits_until_the_update_is_done(ctrl_c_delivered):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with loop.hold_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs here, in the block: it only takes note
            done.append("the update finished")
    assert done == ["the update finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _messages(err: str) -> list[str]:
    """stderr without the progress lines (stderr is not a terminal here: one line per 10 s
    and at the end, each starting with "training: ")."""
    lines = err.splitlines()
    progress = [line for line in lines if line.startswith("training: ")]
    assert progress, "no progress line: the display is silent in a pipe"
    return [line for line in lines if not line.startswith("training: ")]


def test_the_command_reports_ctrl_c_in_one_line_and_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    options = ["finetune", "--output", str(out), "--steps", "6", "--warmup-steps", "1",
               "--eval-every", "3"]
    _stop_at_micro_batch(monkeypatch, 5, KeyboardInterrupt)  # inside step 5 (1 micro-batch)
    assert main(options) == 130
    captured = capsys.readouterr()
    assert _messages(captured.err) == [
        f"vitzoo: interrupted at step 4; saved {out}; continue with: vitzoo finetune "
        f"--output {out} --steps 6 --warmup-steps 1 --eval-every 3 --resume"]
    monkeypatch.undo()
    assert main(options) == 2  # the run is there: it is not silently overwritten
    assert "already holds a run" in capsys.readouterr().err
    assert main([*options, "--resume"]) == 0
    captured = capsys.readouterr()
    assert _messages(captured.err) == [f"resuming {out} from step 4"]
    assert json.loads(captured.out.splitlines()[0])["step"] == 6
    assert [(r["step"], r["split"]) for r in _rows(out)] == [(3, "eval"), (6, "train"),
                                                             (6, "eval")]


def test_a_real_ctrl_c_stops_the_command_with_status_130(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "vitzoo", "finetune", "--output", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               preexec_fn=_sigint_as_default)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not (
            (out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text()):
        time.sleep(0.1)  # until step 50 is logged: training is under way
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    step = torch.load(out / "train_state.pt", weights_only=True)["step"]
    assert _messages(err) == [f"vitzoo: interrupted at step {step}; saved {out}; continue "
                                f"with: vitzoo finetune --output {out} --resume"]
    assert max(r["step"] for r in _rows(out)) <= step


def test_a_dataset_smaller_than_one_batch_is_a_config_error_saying_what_to_pass():
    with pytest.raises(vitzoo.ConfigError, match="fewer than one batch of 64.*--batch-size"):
        StepSampler(10, batch_size=64, micro_batch=64, steps=1)


def test_a_missing_model_or_teacher_file_is_named_not_taken_for_a_model_name(tmp_path):
    for option in ("model", "teacher"):
        with pytest.raises(vitzoo.CheckpointError,
                           match="no checkpoint file .*missing.safetensors"):
            finetune_on("digits", output_dir=tmp_path / option, steps=1,
                        **{option: str(tmp_path / "missing.safetensors")})
