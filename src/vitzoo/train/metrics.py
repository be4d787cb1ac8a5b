"""Training metrics: CSV and JSONL files, TensorBoard when installed, and a PNG of the curves."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from .._utils import atomic_path

__all__ = ["MetricsLog", "plot_curves"]

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


def plot_curves(jsonl: Path, png: Path, *, width: int = 900, height: int = 360) -> Path | None:
    """Draw the training loss and the evaluation top-1 against the step into ``png``.

    Needs Pillow (``pip install "vitzoo[image]"``); without it nothing is drawn and None is
    returned.
    """
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        logger.info("Pillow is not installed: no %s", png.name)
        return None
    rows = _read(jsonl)
    panels = [("training loss", [(r["step"], r["loss"]) for r in rows if r["split"] == "train"]),
              ("eval top-1 (%)", [(r["step"], r["top1"]) for r in rows
                                  if r["split"] == "eval" and r.get("top1") is not None])]
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    panel_w = width // 2
    for p, (title, points) in enumerate(panels):
        x0, y0, x1, y1 = p * panel_w + 60, 30, (p + 1) * panel_w - 20, height - 40
        draw.rectangle((x0, y0, x1, y1), outline="black")
        draw.text((x0, 8), title, fill="black")
        if not points:
            draw.text((x0 + 10, y0 + 10), "no data", fill="gray")
            continue
        xs, ys = [pt[0] for pt in points], [pt[1] for pt in points]
        lo, hi = min(ys), max(ys)
        hi = hi if hi > lo else lo + 1.0
        left, right = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        pixels = [(x0 + (x - left) / (right - left) * (x1 - x0),
                   y1 - (y - lo) / (hi - lo) * (y1 - y0)) for x, y in points]
        draw.line(pixels, fill=(31, 119, 180), width=2)
        if len(points) < 30:
            for cx, cy in pixels:
                draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=(31, 119, 180))
        draw.text((x0 - 55, y0), f"{hi:.3g}", fill="black")
        draw.text((x0 - 55, y1 - 10), f"{lo:.3g}", fill="black")
        draw.text((x0, y1 + 6), f"step {left}", fill="black")
        draw.text((x1 - 70, y1 + 6), f"step {right}", fill="black")
    image.save(png)
    return png
