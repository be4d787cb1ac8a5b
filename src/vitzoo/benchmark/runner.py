"""``run_benchmark``: the suites chosen, on the models and batches chosen, into rows."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from ..errors import ConfigError
from .machine import pin_threads
from .peers import LIBRARIES, ModelSpec
from .processes import convert_rows, load_rows
from .report import add_ratios
from .suites import inference_rows, matmul_rows, train_rows

__all__ = ["QUICK_OVERRIDES", "SUITES", "BenchmarkOptions", "run_benchmark"]

log = logging.getLogger(__name__)

SUITES = ("inference", "matmul", "train", "load", "convert")
QUICK_OVERRIDES = {"img_size": 32, "depth": 2}
"""``--quick``: vit_ti16 at 32x32 pixels with two blocks, so every suite runs in seconds."""


@dataclass
class BenchmarkOptions:
    """What to measure. The defaults are the issue's: three sizes, batches 1 / 8 / 64."""

    suites: tuple[str, ...] = SUITES
    models: tuple[str, ...] = ("vit_ti16", "vit_s16", "vit_b16")
    batches: tuple[int, ...] = (1, 8, 64)
    train_models: tuple[str, ...] = ("vit_ti16", "vit_b16")
    train_batches: tuple[int, ...] = (8,)
    load_models: tuple[str, ...] = ("vit_b16", "vit_l16")
    libraries: tuple[str, ...] = LIBRARIES
    threads: int | None = None
    repeats: int = 5
    warmup: int = 2
    file_repeats: int = 3
    compile: bool = False
    optimize: bool = False
    int8: bool = False
    device: str = "cpu"
    dtypes: tuple[str, ...] | None = None
    quick: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        unknown = sorted(set(self.suites) - set(SUITES))
        if unknown:
            raise ConfigError(f"unknown suite(s) {unknown}; choose from {', '.join(SUITES)}")
        unknown = sorted(set(self.libraries) - set(LIBRARIES))
        if unknown or "vitzoo" not in self.libraries:
            raise ConfigError(f"libraries must include vitzoo and be among "
                              f"{', '.join(LIBRARIES)}, got {', '.join(self.libraries)}")
        if min(self.batches + self.train_batches) < 1 or self.repeats < 1 \
                or self.file_repeats < 1 or self.warmup < 0:
            raise ConfigError("batch sizes and repeats must be at least 1, warmup at least 0")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")

    def quickened(self) -> BenchmarkOptions:
        """Tiny settings for tests: one tiny model, batches 1 and 2, two repeats."""
        return BenchmarkOptions(
            suites=self.suites, models=("vit_ti16",), batches=(1, 2),
            train_models=("vit_ti16",), train_batches=(2,), load_models=("vit_ti16",),
            libraries=self.libraries, threads=self.threads, repeats=2, warmup=1,
            file_repeats=1, compile=self.compile, optimize=self.optimize, int8=self.int8,
            device=self.device,
            dtypes=self.dtypes, quick=True, overrides=dict(QUICK_OVERRIDES))

    def dtype_list(self) -> list[torch.dtype]:
        names = self.dtypes or (("float32", "bfloat16", "float16")
                                if self.device.startswith("cuda") else ("float32",))
        if not self.device.startswith("cuda") and set(names) - {"float32"}:
            raise ConfigError("bfloat16 / float16 rows are measured on CUDA only")
        return [getattr(torch, n) for n in names]


Job = Callable[[], list[dict[str, Any]]]
"""One suite on one model: its rows."""


def _suite_jobs(o: BenchmarkOptions, threads: int) -> list[tuple[str, Job]]:
    def spec(name: str) -> ModelSpec:
        return ModelSpec(name, o.overrides)

    timing = {"repeats": o.repeats, "warmup": o.warmup, "threads": threads}
    min_round = 0.0 if o.quick else 0.2
    jobs: list[tuple[str, Job]] = []
    for name in o.models:
        for dtype in o.dtype_list():
            if "matmul" in o.suites and "inference" not in o.suites:
                jobs.append((f"matmul {name} {dtype}", partial(
                    matmul_rows, spec(name), batches=o.batches, dtype=dtype, device=o.device,
                    **timing)))
            if "inference" in o.suites:
                jobs.append((f"inference {name} {dtype}", partial(
                    inference_rows, spec(name), libraries=o.libraries, batches=o.batches,
                    dtype=dtype, device=o.device, compile_=o.compile, optimize=o.optimize,
                    int8=o.int8, min_round_s=min_round, matmul="matmul" in o.suites, **timing)))
    if "train" in o.suites:
        jobs += [(f"train {n}", partial(
            train_rows, spec(n), libraries=[lib for lib in o.libraries if lib != "transformers"],
            batches=o.train_batches, device=o.device, **timing)) for n in o.train_models]
    if "load" in o.suites:
        jobs += [(f"load {n}", partial(load_rows, spec(n), libraries=o.libraries,
                                       repeats=o.file_repeats, threads=threads))
                 for n in o.load_models]
    if "convert" in o.suites:
        jobs += [(f"convert {n}", partial(convert_rows, spec(n), repeats=o.file_repeats,
                                          threads=threads))
                 for n in o.load_models]
    return jobs


def run_benchmark(options: BenchmarkOptions | None = None,
                  progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run the chosen suites; returns one row per measurement (see ``report.COLUMNS``) with
    the ratios filled in. Threads are pinned first (``options.threads``, default all cores)."""
    o = options or BenchmarkOptions()
    if o.quick and not o.overrides:
        o = o.quickened()
    o.check()
    threads = pin_threads(o.threads)
    rows: list[dict[str, Any]] = []
    for label, job in _suite_jobs(o, threads):
        (progress or log.info)(f"benchmark: {label}")
        rows += job()
    return add_ratios(rows)
