"""vitzoo's benchmark suite against timm and Hugging Face transformers (``vitzoo benchmark``).

Inference and training images/s, time and peak memory to a ready model and of conversion, and
the machine's matmul FLOP/s at each model's own GEMM shapes; CSV, markdown and
docs/performance.md. timm and transformers are used only when installed.
"""

from __future__ import annotations

from .flops import Gemm, gemm_list, matmul_seconds, model_flops
from .machine import describe_machine, pin_threads
from .report import COLUMNS, add_ratios, markdown_tables, performance_page, read_csv, write_csv
from .runner import SUITES, BenchmarkOptions, run_benchmark

__all__ = ["COLUMNS", "SUITES", "BenchmarkOptions", "Gemm", "add_ratios", "describe_machine",
           "gemm_list", "markdown_tables", "matmul_seconds", "model_flops", "performance_page",
           "pin_threads", "read_csv", "run_benchmark", "write_csv"]
