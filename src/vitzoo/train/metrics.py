"""Training metrics: CSV and JSONL files, TensorBoard when installed, and a picture of the
curves (matplotlib)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from .._utils import atomic_path

__all__ = ["MetricsLog", "curves_summary", "plot_curves"]

logger = logging.getLogger(__name__)

COLUMNS = ("step", "split", "loss", "top1", "top5", "lr", "images_per_s", "time")


class MetricsLog:
    """Appends rows to ``metrics.csv`` and ``metrics.jsonl`` in ``directory`` (and to
    TensorBoard event files when the ``tensorboard`` package is importable).

    Args:
        directory: the run's directory.
        start_step: the step a resumed run continues from: the rows of later steps (written
            after its checkpoint by the run that stopped) are removed, so that none repeats.
            0 starts the files anew.
    """

    def __init__(self, directory: Path, *, start_step: int = 0) -> None:
        self.directory = directory
        self.csv_path, self.jsonl_path = directory / "metrics.csv", directory / "metrics.jsonl"
        resume = start_step > 0 and self.csv_path.exists() and self.jsonl_path.exists()
        if resume:
            _keep_rows_up_to(self.csv_path, self.jsonl_path, start_step)
        mode = "a" if resume else "w"
        self._csv = open(self.csv_path, mode, newline="")
        self._writer = csv.DictWriter(self._csv, fieldnames=COLUMNS, extrasaction="ignore")
        if mode == "w":
            self._writer.writeheader()
        self._jsonl = open(self.jsonl_path, mode)
        self._tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: TensorBoard hides the events of the steps from there on
            self._tb = SummaryWriter(str(directory / "tensorboard"),
                                     purge_step=start_step + 1 if start_step else None)
        except Exception:  # noqa: BLE001 - tensorboard is optional
            self._tb = None

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow(row)
        self._csv.flush()
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for key in ("loss", "top1", "top5", "lr"):
                if row.get(key) is not None:
                    self._tb.add_scalar(f"{row['split']}/{key}", row[key], row["step"])

    def close(self) -> None:
        self._csv.close()
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def _read(jsonl: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]


def _keep_rows_up_to(csv_path: Path, jsonl_path: Path, step: int) -> None:
    """Rewrite both files (atomically) without the rows of steps after ``step``."""
    rows = [row for row in _read(jsonl_path) if row["step"] <= step]
    with atomic_path(jsonl_path) as tmp:
        tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with open(csv_path, newline="") as f:
        kept = [row for row in csv.DictReader(f) if int(row["step"]) <= step]
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)


def plot_curves(jsonl: Path, png: Path, *, width: float = 9.0, height: float = 3.6
                ) -> Path | None:
    """Draw the training loss and the evaluation top-1 against the step into ``png``, two
    panels with titled axes, ticks and a grid, written atomically.

    Needs matplotlib (``pip install "vitzoo[plot]"``). Without it nothing is drawn, one plain
    line says so and gives the last loss and the best top-1 instead, and None is returned.

    Args:
        jsonl: the run's ``metrics.jsonl``.
        png: the picture to write.
        width: the figure's width in inches (at 120 dpi).
        height: the figure's height in inches.
    """
    rows = _read(jsonl)
    train = [(r["step"], r["loss"]) for r in rows if r["split"] == "train"]
    evals = [(r["step"], r["top1"]) for r in rows
             if r["split"] == "eval" and r.get("top1") is not None]
    try:
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning("matplotlib is not installed (pip install \"vitzoo[plot]\"), so no %s: "
                       "%s", png.name, curves_summary(train, evals))
        return None
    figure = Figure(figsize=(width, height), layout="constrained")
    panels = figure.subplots(1, 2)
    for axes, points, title, label in ((panels[0], train, "training loss", "loss"),
                                       (panels[1], evals, "evaluation top-1", "top-1 (%)")):
        axes.set_title(title)
        axes.set_xlabel("step")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.4)
        if points:
            steps, values = zip(*points, strict=True)
            axes.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3)
        else:
            axes.text(0.5, 0.5, "no data", transform=axes.transAxes, ha="center")
    with atomic_path(png) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    return png


def curves_summary(train: list[tuple[int, float]], evals: list[tuple[int, float]]) -> str:
    """One line for a log without a picture: the last training loss and the best top-1."""
    parts = []
    if train:
        parts.append(f"training loss {train[-1][1]:.4g} at step {train[-1][0]}")
    if evals:
        step, top1 = max(evals, key=lambda point: point[1])
        parts.append(f"best eval top-1 {top1:.2f} % at step {step}")
    return "; ".join(parts) or "no metrics yet"
