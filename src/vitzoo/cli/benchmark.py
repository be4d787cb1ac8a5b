"""``vitzoo benchmark``: vitzoo against timm and transformers, into CSV, markdown and docs."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..benchmark import (
    SUITES,
    BenchmarkOptions,
    describe_machine,
    markdown_tables,
    performance_page,
    run_benchmark,
    write_csv,
)
from ..benchmark.peers import LIBRARIES


def _names(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.replace(",", " ").split() if v)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "benchmark", help="measure vitzoo against timm and transformers",
        description="Inference and training images/s, time and peak memory to a ready model "
                    "and of .npz conversion, and matmul FLOP/s at each model's GEMM shapes; "
                    "identical weights, pinned threads, interleaved rounds in shuffled order, "
                    "ratios taken round by round (median, quartiles). timm and "
                    "transformers rows say 'not installed' where they are missing.",
    )
    d = BenchmarkOptions()
    parser.add_argument("--suites", type=_names, default=d.suites,
                        help=f"comma-separated, of {','.join(SUITES)} (default: all)")
    parser.add_argument("--models", nargs="+", default=d.models)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=d.batches,
                        help="inference batch sizes")
    parser.add_argument("--train-models", nargs="+", default=d.train_models)
    parser.add_argument("--train-batch-sizes", nargs="+", type=int, default=d.train_batches,
                        help="training-step batch sizes")
    parser.add_argument("--load-models", nargs="+", default=d.load_models,
                        help="models of the load and convert suites (random weights with "
                             "the real shapes)")
    parser.add_argument("--libraries", type=_names, default=d.libraries,
                        help=f"comma-separated, of {','.join(LIBRARIES)}")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads, pinned (default: every usable core)")
    parser.add_argument("--repeats", type=int, default=d.repeats,
                        help="timed rounds; the medians are over them")
    parser.add_argument("--warmup", type=int, default=d.warmup,
                        help="untimed rounds first")
    parser.add_argument("--file-repeats", type=int, default=d.file_repeats,
                        help="fresh processes per way in the load and convert suites")
    parser.add_argument("--compile", action="store_true", help="add torch.compile rows")
    parser.add_argument("--optimize", action="store_true", help="add vitzoo.optimize rows")
    parser.add_argument("--int8", action="store_true",
                        help="add vitzoo's int8 dynamically quantized model (CPU float32)")
    parser.add_argument("--device", default=d.device)
    parser.add_argument("--dtypes", type=_names, default=None,
                        help="default: float32 on CPU; float32,bfloat16,float16 on CUDA")
    parser.add_argument("--csv", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--docs", type=Path, default=None,
                        help="write the performance page (docs/performance.md)")
    parser.add_argument("--note", default=None,
                        help="a sentence for the performance page (how busy the machine was)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings (a 2-block vit_ti16 at 32x32), for tests")
    parser.set_defaults(run=run)


def _command(args: argparse.Namespace, machine: dict[str, str]) -> str:
    """The command line that regenerates the page: every option that shapes the figures."""
    words = ["vitzoo", "benchmark", "--suites", ",".join(args.suites)]
    if args.quick:
        words.append("--quick")
    else:
        words += ["--models", *args.models, "--batch-sizes", *map(str, args.batch_sizes),
                  "--train-models", *args.train_models, "--train-batch-sizes",
                  *map(str, args.train_batch_sizes), "--load-models", *args.load_models,
                  "--repeats", str(args.repeats), "--warmup", str(args.warmup),
                  "--file-repeats", str(args.file_repeats)]
    words += ["--libraries", ",".join(args.libraries), "--threads", machine["threads"]]
    words += [flag for flag, on in (("--compile", args.compile), ("--optimize", args.optimize),
                                    ("--int8", args.int8)) if on]
    if args.device != "cpu":
        words += ["--device", args.device]
    if args.note:
        words += ["--note", args.note]
    words += ["--docs", str(args.docs)]
    return " ".join(shlex.quote(w) for w in words)


def run(args: argparse.Namespace) -> int:
    options = BenchmarkOptions(
        suites=tuple(args.suites), models=tuple(args.models), batches=tuple(args.batch_sizes),
        train_models=tuple(args.train_models), train_batches=tuple(args.train_batch_sizes),
        load_models=tuple(args.load_models), libraries=tuple(args.libraries),
        threads=args.threads, repeats=args.repeats, warmup=args.warmup,
        file_repeats=args.file_repeats, compile=args.compile, optimize=args.optimize,
        int8=args.int8, device=args.device, dtypes=tuple(args.dtypes) if args.dtypes else None,
        quick=args.quick)
    rows = run_benchmark(options, progress=lambda line: print(line, file=sys.stderr))
    machine = describe_machine(args.device)
    tables = markdown_tables(rows)
    print("\n".join(f"{k}: {v}" for k, v in machine.items()) + "\n")
    print(tables, end="")
    if args.csv is not None:
        write_csv(rows, args.csv)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(tables, encoding="utf-8")
    if args.docs is not None:
        args.docs.parent.mkdir(parents=True, exist_ok=True)
        page = performance_page(rows, machine, _command(args, machine), note=args.note)
        args.docs.write_text(page, encoding="utf-8")
    return 0
