"""Benchmark rows: the stable CSV columns, the ratios between libraries, CSV and markdown."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .timing import paired_ratio

__all__ = ["COLUMNS", "THROUGHPUT_SUITES", "add_ratios", "markdown_tables", "new_row",
           "performance_page", "read_csv", "with_samples", "write_csv"]

COLUMNS = ("suite", "model", "library", "variant", "dtype", "batch", "threads", "repeats",
           "status", "seconds", "images_per_s", "latency_ms", "vs_timm", "vs_timm_q1",
           "vs_timm_q3", "vs_transformers", "vs_transformers_q1", "vs_transformers_q3",
           "vs_eager", "gflop", "gflop_per_s", "matmul_fraction", "peak_rss_mib", "weights_mib",
           "rss_per_weights", "baseline_seconds", "vs_baseline", "max_abs_diff")

COLUMN_DOCS = {
    "suite": "inference, train, load, convert or matmul",
    "model": "the model name (with its overrides in brackets under `--quick`)",
    "library": "vitzoo, timm, transformers; torch for matmul rows; baseline for the bytes "
               "read-and-written row of the convert suite",
    "variant": "eager, compile (torch.compile), optimize (vitzoo.optimize); the way to a ready "
               "model in the load suite",
    "dtype": "float32 (bfloat16 / float16 rows on CUDA only)",
    "batch": "images per batch (1 in the load and convert suites)",
    "threads": "torch's intra-op threads, pinned with torch.set_num_threads",
    "repeats": "timed rounds (interleaved) or fresh processes the median is over",
    "status": "ok, not installed, or why the row has no figures",
    "seconds": "median seconds per batch (per step, per load, per conversion)",
    "images_per_s": "batch / seconds (inference and train)",
    "latency_ms": "seconds x 1000",
    "vs_timm": "inference and train: timm's seconds / vitzoo's in the same variant (or "
               "eager), round by round, the median over rounds (above 1: faster); load: "
               "seconds / the seconds of timm's fastest way (below 1: faster)",
    "vs_timm_q1": "inference and train: the lower quartile of those per-round ratios",
    "vs_timm_q3": "inference and train: their upper quartile (q1 above 1: faster in at least "
                  "three rounds of four)",
    "vs_transformers": "the same against transformers",
    "vs_transformers_q1": "the same against transformers",
    "vs_transformers_q3": "the same against transformers",
    "vs_eager": "inference: vitzoo's eager seconds / this vitzoo variant's (optimize, "
                "compile, int8), round by round, the median over rounds (above 1: faster)",
    "gflop": "matrix-multiply GFLOP of one batch (vitzoo.benchmark.flops.model_flops / 1e9)",
    "gflop_per_s": "gflop / seconds; in matmul rows the machine's matmul GFLOP/s at the "
                   "model's own GEMM shapes",
    "matmul_fraction": "the matmul row's seconds / this row's (same model, batch, dtype), "
                       "round by round, the median over rounds: the fraction of the "
                       "machine's matmul FLOP/s the model reaches",
    "peak_rss_mib": "peak resident memory (VmHWM) above the child process after its imports",
    "weights_mib": "bytes of the weights file (load) or of the .npz arrays (convert)",
    "rss_per_weights": "peak_rss_mib / weights_mib",
    "baseline_seconds": "convert: median seconds to read the .npz members and write the same "
                        "bytes (with fsync)",
    "vs_baseline": "convert: seconds / baseline_seconds",
    "max_abs_diff": "largest |logit - vitzoo's logit| on the benchmark batch",
}

THROUGHPUT_SUITES = ("inference", "train")
_KEY = ("suite", "model", "dtype", "batch", "threads")


def new_row(**fields: Any) -> dict[str, Any]:
    """A row with every column, ``None`` where nothing was measured; ``status`` "ok"."""
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise KeyError(f"not benchmark columns: {sorted(unknown)}")
    return {c: fields.get(c, "ok" if c == "status" else None) for c in COLUMNS}


_SAMPLES = "_samples"  # per-round seconds, kept beside the columns (not written to CSV)


def with_samples(row: dict[str, Any], samples: Sequence[float]) -> dict[str, Any]:
    """``row`` with the per-round seconds it was measured from, for paired ratios."""
    row[_SAMPLES] = list(samples)
    return row


def _paired(row: Mapping[str, Any], ref: Mapping[str, Any]) -> tuple[float, float, float] | None:
    """``ref``'s seconds / ``row``'s, round by round (median, q1, q3), when both rows come
    from the same interleaved rounds."""
    mine, theirs = row.get(_SAMPLES), ref.get(_SAMPLES)
    if not mine or not theirs or len(mine) != len(theirs):
        return None
    return paired_ratio(list(theirs), list(mine))


def _reference(rows: Sequence[Mapping[str, Any]], row: Mapping[str, Any], library: str
               ) -> Mapping[str, Any] | None:
    """``library``'s row for the same measurement: the same variant, else eager; in the load
    suite, where the ways differ between libraries, ``library``'s fastest way."""
    same = [r for r in rows if r["library"] == library and r["status"] == "ok"
            and all(r[k] == row[k] for k in _KEY)]
    for variant in (row["variant"], "eager"):
        match = [r for r in same if r["variant"] == variant]
        if match:
            return match[0]
    if row["suite"] in THROUGHPUT_SUITES or not same:
        return None
    return min(same, key=lambda r: r["seconds"])


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill vs_timm / vs_transformers / matmul_fraction / vs_baseline in place."""
    for row in rows:
        if row["status"] != "ok" or row["suite"] == "matmul":
            continue
        for library in ("timm", "transformers"):
            ref = _reference(rows, row, library)
            if ref is None:
                continue
            if row["suite"] in THROUGHPUT_SUITES:
                paired = _paired(row, ref)
                if paired is None:
                    row[f"vs_{library}"] = row["images_per_s"] / ref["images_per_s"]
                else:
                    (row[f"vs_{library}"], row[f"vs_{library}_q1"],
                     row[f"vs_{library}_q3"]) = paired
            else:
                row[f"vs_{library}"] = row["seconds"] / ref["seconds"]
        if row["suite"] == "inference" and row["library"] == "vitzoo" \
                and row["variant"] != "eager":
            eager = _reference(rows, {**row, "variant": "eager"}, "vitzoo")
            paired = _paired(row, eager) if eager is not None else None
            if paired is not None:
                row["vs_eager"] = paired[0]
        if row["suite"] == "inference":
            matmul = _reference(rows, {**row, "suite": "matmul", "variant": "gemm"}, "torch")
            if matmul is not None and row["gflop_per_s"]:
                paired = _paired(row, matmul)
                row["matmul_fraction"] = (row["gflop_per_s"] / matmul["gflop_per_s"]
                                          if paired is None else paired[0])
        if row["suite"] == "convert" and row["baseline_seconds"]:
            row["vs_baseline"] = row["seconds"] / row["baseline_seconds"]
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    return str(value)


def write_csv(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """One line per row, the columns of :data:`COLUMNS` in that order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row[c] is None else row[c] for c in COLUMNS})
    return path


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


_SHOWN = {
    "inference": ("model", "library", "variant", "dtype", "batch", "status", "images_per_s",
                  "latency_ms", "vs_timm", "vs_transformers", "vs_eager", "gflop_per_s",
                  "matmul_fraction",
                  "max_abs_diff"),
    "train": ("model", "library", "variant", "dtype", "batch", "status", "images_per_s",
              "latency_ms", "vs_timm"),
    "load": ("model", "library", "variant", "status", "seconds", "vs_timm", "peak_rss_mib",
             "weights_mib", "rss_per_weights"),
    "convert": ("model", "library", "variant", "status", "seconds", "baseline_seconds",
                "vs_baseline", "peak_rss_mib", "weights_mib", "rss_per_weights"),
    "matmul": ("model", "dtype", "batch", "status", "seconds", "gflop", "gflop_per_s"),
}


def markdown_tables(rows: Sequence[Mapping[str, Any]]) -> str:
    """One markdown table per suite present, with that suite's columns."""
    out = io.StringIO()
    for suite, columns in _SHOWN.items():
        mine = [r for r in rows if r["suite"] == suite]
        if not mine:
            continue
        threads = sorted({str(r["threads"]) for r in mine})
        out.write(f"### {suite} ({', '.join(threads)} threads, median of "
                  f"{mine[0]['repeats']})\n\n")
        out.write("| " + " | ".join(columns) + " |\n")
        out.write("|" + "---|" * len(columns) + "\n")
        for r in mine:
            out.write("| " + " | ".join(_cell(r[c]) for c in columns) + " |\n")
        out.write("\n")
    return out.getvalue()


def _quartiles(row: Mapping[str, Any], library: str) -> str:
    low, high = row[f"vs_{library}_q1"], row[f"vs_{library}_q3"]
    return "" if low is None or high is None else f" ({_cell(low)}-{_cell(high)})"


def _summary(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        if r["library"] != "vitzoo" or r["status"] != "ok":
            continue
        parts = [f"{name} {_cell(r[f'vs_{name}'])}x{_quartiles(r, name)}"
                 for name in ("timm", "transformers") if r[f"vs_{name}"] is not None]
        if r["vs_eager"] is not None:
            parts.append(f"{_cell(r['vs_eager'])}x vitzoo eager")
        if r["matmul_fraction"] is not None:
            parts.append(f"{_cell(r['matmul_fraction'])} of matmul FLOP/s")
        if r["vs_baseline"] is not None:
            parts.append(f"{_cell(r['vs_baseline'])}x the bytes baseline")
        if r["rss_per_weights"] is not None:
            parts.append(f"peak RSS {_cell(r['rss_per_weights'])}x the weights")
        if parts:
            what = (f"{r['variant']} {r['dtype']} batch {r['batch']}"
                    if r["suite"] in THROUGHPUT_SUITES else r["variant"])
            lines.append(f"- {r['suite']} {r['model']} {what}: " + ", ".join(parts))
    return lines


def performance_page(rows: Sequence[Mapping[str, Any]], machine: Mapping[str, str],
                     command: str, note: str | None = None) -> str:
    """docs/performance.md: the machine, the ratios, the tables and the columns."""
    lines = ["# Performance", "",
             "<!-- generated by `vitzoo benchmark --docs`; edits are overwritten -->", "",
             "vitzoo against timm and Hugging Face transformers, measured side by side in one "
             "run: identical weights, threads pinned, interleaved rounds in shuffled order, "
             "ratios taken round by round and their medians over repeats, "
             "`torch.inference_mode`; loading and conversion in fresh processes, one per way "
             "and round, each started after `os.sync()` so that none pays for the writeback "
             "of files written before it. What vitzoo does to be fast, and how to tune a machine "
             "(the allocator, threads), is in [speed.md](speed.md). Regenerate this page "
             "with:", "", "```bash",
             command, "```", "", "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine.items()]
    if note:
        lines += ["", f"Note: {note}"]
    lines += ["", "## Ratios", "",
              "vs timm / transformers: images/s ratios (above 1: vitzoo faster) for inference "
              "and training, the median of the per-round ratios with their quartiles in "
              "brackets; time ratios (below 1: vitzoo faster) for loading and conversion.",
              "", *(_summary(rows) or ["- (no vitzoo rows)"]), "", "## Tables", "",
              markdown_tables(rows).rstrip(), "", "## CSV columns", "",
              "`--csv PATH` writes one row per measurement with these columns, in this order:",
              "", "| column | meaning |", "|---|---|"]
    lines += [f"| `{c}` | {COLUMN_DOCS[c]} |" for c in COLUMNS]
    return "\n".join(lines) + "\n"
