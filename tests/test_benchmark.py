"""The benchmark suite (``vitzoo benchmark``): the FLOP count, the rows and their ratios, the
CSV / markdown / docs outputs, pinned threads, and "not installed" rows. No timing is asserted:
the values are checked for being positive, for being the quotients of their columns, and the
ratios for being the paired per-round ratios of known samples."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import vitzoo
from vitzoo.benchmark import (
    COLUMNS,
    BenchmarkOptions,
    add_ratios,
    gemm_list,
    model_flops,
    peers,
    processes,
    read_csv,
    run_benchmark,
    suites,
)
from vitzoo.benchmark.peers import ModelSpec
from vitzoo.benchmark.report import new_row, with_samples
from vitzoo.benchmark.runner import QUICK_OVERRIDES
from vitzoo.benchmark.timing import interleaved, paired_ratio
from vitzoo.cli import main
from vitzoo.config import ViTConfig
from vitzoo.errors import ConfigError
from vitzoo.info import count_flops

TINY = ModelSpec("vit_ti16", QUICK_OVERRIDES)


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_the_flop_count_matches_a_hand_count_for_a_tiny_config():
    cfg = ViTConfig(img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2,
                    num_classes=10)
    B, N, T, D, H, hd, hidden = 2, 4, 5, 32, 2, 16, 128  # 2x2 patches + the class token
    patch = 2 * (B * N) * (3 * 16 * 16) * D
    block = (2 * (B * T) * D * 3 * D          # qkv
             + 2 * (B * H) * T * hd * T       # Q @ K^T
             + 2 * (B * H) * T * T * hd       # A @ V
             + 2 * (B * T) * D * D            # proj
             + 2 * (B * T) * D * hidden * 2)  # fc1 and fc2
    head = 2 * B * D * 10
    assert model_flops(cfg, B) == patch + 2 * block + head == 898816
    assert [g.name for g in gemm_list(cfg, B)][:3] == ["patch_embed", "blocks.0.attn.qkv",
                                                      "blocks.0.attn.q@k^T"]


def test_the_flop_count_agrees_with_torchs_counter():
    with torch.device("meta"):
        model = vitzoo.create_model("vit_b16", depth=2, num_classes=10)
    # info.count_flops counts multiply-adds, model_flops counts 2 per multiply-add
    assert model_flops(model.cfg, 1) == 2 * count_flops(model, (3, 224, 224))
    assert model_flops(model.cfg, 8) == 8 * model_flops(model.cfg, 1)


def test_the_matmul_suite_alone_times_the_gemm_list():
    (row,) = suites.matmul_rows(TINY, batches=[2], dtype=torch.float32, device="cpu",
                                repeats=2, warmup=0, threads=1)
    with torch.device("meta"):
        cfg = TINY.build().cfg
    assert row["gflop"] == model_flops(cfg, 2) / 1e9
    assert row["seconds"] > 0 and row["gflop_per_s"] == row["gflop"] / row["seconds"]


def test_a_hybrid_has_no_gemm_list():
    with pytest.raises(ConfigError, match="hybrid"):
        gemm_list(vitzoo.registry.default_config("vit_base_r50_s16_224"), 1)


def _close(a: str, b: float) -> bool:
    return math.isclose(float(a), b, rel_tol=1e-6)


def _check_inference_rows(rows: list[dict[str, str]]) -> None:
    matmul = {(r["model"], r["batch"]): r for r in rows if r["suite"] == "matmul"}
    for r in (r for r in rows if r["status"] == "ok" and r["suite"] != "matmul"):
        seconds, batch = float(r["seconds"]), int(r["batch"])
        assert seconds > 0 and float(r["images_per_s"]) > 0
        assert _close(r["images_per_s"], batch / seconds)
        assert _close(r["latency_ms"], seconds * 1e3)
        if r["suite"] == "inference":
            assert _close(r["gflop_per_s"], float(r["gflop"]) / seconds)
            m = matmul[(r["model"], r["batch"])]
            assert float(m["gflop_per_s"]) > 0 and float(r["matmul_fraction"]) > 0
        for peer in ("timm", "transformers"):
            ref = [p for p in rows if p["library"] == peer and p["status"] == "ok"
                   and all(p[k] == r[k] for k in ("suite", "model", "batch", "variant"))]
            if ref:  # paired per-round ratios: the median lies between the quartiles
                low, mid, high = (float(r[f"vs_{peer}{q}"]) for q in ("_q1", "", "_q3"))
                assert 0 < low <= mid <= high, (low, mid, high)


def test_a_quick_run_writes_csv_markdown_and_the_docs_page(tmp_path, capsys):
    argv = ["benchmark", "--quick", "--suites", "inference,matmul,train", "--threads", "1",
            "--csv", str(tmp_path / "b.csv"), "--markdown", str(tmp_path / "b.md"),
            "--docs", str(tmp_path / "performance.md"), "--note", "a quiet machine"]
    assert main(argv) == 0
    assert torch.get_num_threads() == 1  # pinned
    rows = read_csv(tmp_path / "b.csv")
    assert list(rows[0]) == list(COLUMNS)
    assert {r["suite"] for r in rows} == {"inference", "matmul", "train"}
    assert {r["threads"] for r in rows} == {"1"}
    assert {r["library"] for r in rows if r["suite"] == "inference"} == set(peers.LIBRARIES)
    ok = [r for r in rows if r["library"] == "vitzoo"]
    assert ok and all(r["status"] == "ok" for r in ok)
    assert all(float(r["max_abs_diff"]) == 0 for r in ok if r["suite"] == "inference")
    _check_inference_rows(rows)
    table = (tmp_path / "b.md").read_text()
    assert "### inference (1 threads" in table and "| vitzoo | eager | float32 | 1 | ok |" in table
    page = (tmp_path / "performance.md").read_text()
    assert "| threads | 1 |" in page and "| cpu |" in page and "| torch |" in page
    assert "vitzoo benchmark --suites inference,matmul,train --quick" in page
    assert "--docs" in page and "## CSV columns" in page
    assert "Note: a quiet machine" in page
    assert "### matmul" in capsys.readouterr().out


def test_missing_libraries_give_not_installed_rows(monkeypatch):
    def absent(name):
        return None
    monkeypatch.setattr(peers, "library_version", absent)
    monkeypatch.setattr(suites, "library_version", absent)
    rows = suites.inference_rows(TINY, libraries=peers.LIBRARIES, batches=[1],
                                 dtype=torch.float32, device="cpu", repeats=1, warmup=0,
                                 threads=1, min_round_s=0, matmul=False)
    rows += suites.train_rows(TINY, libraries=["vitzoo", "timm"], batches=[2], device="cpu",
                              repeats=1, warmup=0, threads=1)
    status = {(r["suite"], r["library"]): r["status"] for r in rows}
    assert status == {("inference", "vitzoo"): "ok", ("inference", "timm"): "not installed",
                      ("inference", "transformers"): "not installed",
                      ("train", "vitzoo"): "ok", ("train", "timm"): "not installed"}
    missing = [r for r in add_ratios(rows) if r["status"] != "ok"]
    assert all(r["seconds"] is None and r["images_per_s"] is None for r in missing)
    assert all(r["vs_timm"] is None for r in rows)


def test_a_way_that_fails_is_reported_in_its_row_and_the_others_still_run():
    def broken(x):
        raise RuntimeError("no C++ compiler\nmore")
    found = {("vitzoo", "eager"): lambda x: x * 2, ("timm", "compile"): broken}
    x = torch.ones(2)
    assert suites._check(found, x, x * 2) == {("vitzoo", "eager"): 0.0}
    assert found[("timm", "compile")] == "failed: RuntimeError: no C++ compiler"


def test_ratios_are_the_quotients_of_the_columns():
    common = {"model": "m", "dtype": "float32", "batch": 8, "variant": "eager"}
    rows = [new_row(suite="inference", library="vitzoo", images_per_s=12.0, seconds=8 / 12,
                    gflop_per_s=30.0, **common),
            new_row(suite="inference", library="timm", images_per_s=10.0, **common),
            new_row(suite="inference", library="transformers", images_per_s=8.0, **common),
            new_row(suite="matmul", library="torch", gflop_per_s=40.0,
                    **{**common, "variant": "gemm"}),
            new_row(suite="load", library="vitzoo", seconds=1.0, variant="checkpoint_path",
                    model="m", batch=1),
            new_row(suite="load", library="timm", seconds=4.0, variant="a", model="m", batch=1),
            new_row(suite="load", library="timm", seconds=5.0, variant="b", model="m", batch=1),
            new_row(suite="convert", library="vitzoo", seconds=3.0, baseline_seconds=2.0,
                    variant="convert", model="m", batch=1)]
    add_ratios(rows)
    assert (rows[0]["vs_timm"], rows[0]["vs_transformers"]) == (1.2, 1.5)
    assert rows[0]["matmul_fraction"] == 0.75
    assert rows[1]["vs_timm"] == 1.0
    assert rows[4]["vs_timm"] == 0.25  # against timm's fastest way
    assert rows[7]["vs_baseline"] == 1.5


def test_ratios_are_paired_round_by_round():
    """The medians of each library's rounds give 3.0 and a fraction of 1.5; the ratios taken
    round by round say 1.5 and 0.5 (vitzoo was never 3x faster in any one round)."""
    common = {"model": "m", "dtype": "float32", "batch": 1, "variant": "eager"}
    vitzoo_s, timm_s, gemm_s = [2.0, 2.0, 8.0], [3.0, 6.0, 12.0], [1.0, 3.0, 4.0]
    rows = [with_samples(new_row(suite="inference", library="vitzoo", seconds=2.0,
                                 images_per_s=1 / 2, gflop_per_s=6.0, **common), vitzoo_s),
            with_samples(new_row(suite="inference", library="timm", seconds=6.0,
                                 images_per_s=1 / 6, **common), timm_s),
            with_samples(new_row(suite="matmul", library="torch", gflop_per_s=4.0,
                                 **{**common, "variant": "gemm"}), gemm_s)]
    add_ratios(rows)
    assert (rows[0]["vs_timm"], rows[0]["vs_timm_q1"], rows[0]["vs_timm_q3"]) == (1.5, 1.5, 2.25)
    assert rows[0]["matmul_fraction"] == 0.5
    assert paired_ratio([1.0, 2.0, 3.0, 4.0, 5.0], [1.0] * 5) == (3.0, 2.0, 4.0)
    with pytest.raises(ValueError, match="same rounds"):
        paired_ratio([1.0], [1.0, 2.0])


def test_interleaved_rounds_call_each_candidate_once_in_a_shuffled_order():
    calls: list[str] = []
    candidates = {name: (lambda name=name: calls.append(name)) for name in "abcdef"}
    samples = interleaved(candidates, repeats=6, warmup=0)
    assert {name: len(s) for name, s in samples.items()} == dict.fromkeys("abcdef", 6)
    rounds = [calls[i:i + 6] for i in range(0, 36, 6)]
    assert all(sorted(r) == list("abcdef") for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # not one fixed order
    calls.clear()
    interleaved(candidates, repeats=6, warmup=0)
    assert [calls[i:i + 6] for i in range(0, 36, 6)] == rounds  # seeded: repeatable


def test_the_convert_suite_measures_in_child_processes():
    rows = processes.convert_rows(TINY, repeats=1, threads=1)
    assert [(r["library"], r["status"]) for r in rows] == [("vitzoo", "ok"), ("baseline", "ok")]
    add_ratios(rows)
    for r in rows:
        assert r["seconds"] > 0 and r["weights_mib"] > 0 and r["peak_rss_mib"] >= 0
        assert r["rss_per_weights"] == r["peak_rss_mib"] / r["weights_mib"]
        assert r["vs_baseline"] == r["seconds"] / rows[1]["seconds"]
    verified = processes.convert_rows(TINY, repeats=1, threads=1, verify=True)
    assert [(r["variant"], r["status"]) for r in verified] == [("convert_verify", "ok"),
                                                               ("read_write", "ok")]


def test_bad_options_are_user_errors(capsys):
    assert main(["benchmark", "--suites", "inference,nope", "--quick"]) == 2
    assert "unknown suite" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="CUDA only"):
        run_benchmark(BenchmarkOptions(dtypes=("bfloat16",), quick=True))
    with pytest.raises(ConfigError, match="threads"):
        run_benchmark(BenchmarkOptions(threads=0, quick=True))


def test_the_benchmark_command_is_registered(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["benchmark", "--help"])
    assert exit_.value.code == 0
    assert "--threads" in capsys.readouterr().out


def test_optimize_rows_are_measured_per_batch_and_name_the_choice(monkeypatch):
    seen = []

    def optimize(model, example):
        seen.append(tuple(example.shape))
        model.optimize_report = SimpleNamespace(applied="eager")
        return model
    kwargs = {"libraries": ["vitzoo"], "batches": [1, 2], "dtype": torch.float32,
              "device": "cpu", "repeats": 1, "warmup": 0, "threads": 1, "min_round_s": 0,
              "matmul": False, "optimize": True}
    monkeypatch.setattr(suites, "optimize", optimize)
    rows = suites.inference_rows(TINY, **kwargs)
    assert [(r["batch"], r["variant"], r["status"]) for r in rows] == [
        (1, "eager", "ok"), (1, "optimize (eager)", "ok"),
        (2, "eager", "ok"), (2, "optimize (eager)", "ok")]
    assert [shape[0] for shape in seen] == [1, 2] and rows[1]["max_abs_diff"] == 0

    def broken(model, example):
        raise RuntimeError("no compiler")
    monkeypatch.setattr(suites, "optimize", broken)
    rows = suites.inference_rows(TINY, **{**kwargs, "batches": [1]})
    assert rows[1]["variant"] == "optimize"
    assert rows[1]["status"] == "failed: RuntimeError: no compiler"


def test_int8_rows_run_in_the_same_rounds_with_their_speed_against_eager():
    rows = suites.inference_rows(TINY, libraries=["vitzoo"], batches=[2], dtype=torch.float32,
                                 device="cpu", repeats=3, warmup=1, threads=1, min_round_s=0,
                                 int8=True)
    add_ratios(rows)
    by_variant = {r["variant"]: r for r in rows if r["suite"] == "inference"}
    assert set(by_variant) == {"eager", "int8"}
    int8, eager = by_variant["int8"], by_variant["eager"]
    assert int8["status"] == "ok" and int8["vs_eager"] > 0 and eager["vs_eager"] is None
    assert 0 < int8["max_abs_diff"] < 0.5  # quantized: close to float32, not equal
    assert suites._int8(torch.nn.Linear(2, 2), "cpu", torch.bfloat16).startswith("skipped")
