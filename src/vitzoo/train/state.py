"""The state of a training run on disk: the weights (``last.safetensors``, ``best.safetensors``)
and ``train_state.pt`` (step, optimizer, schedule, loss scaler, best evaluation, recipe and
random states), written together so that a resumed run continues exactly."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._utils import atomic_path
from ..errors import ConfigError, VitzooError
from ..io import save_model
from ..loading import load_checkpoint
from .config import TrainConfig

__all__ = ["BEST_FILE", "LAST_FILE", "RUN_FILES", "STATE_FILE", "TrainState", "check_output_dir",
           "clear_run", "preserved_rng", "resume_from", "rng_state", "save_checkpoint",
           "save_weights", "saved_step", "seed_everything", "set_rng_state"]

logger = logging.getLogger(__name__)

STATE_FILE = "train_state.pt"
LAST_FILE = "last.safetensors"
BEST_FILE = "best.safetensors"
RUN_FILES = (STATE_FILE, LAST_FILE, BEST_FILE, "train_config.json", "metrics.csv",
             "metrics.jsonl", "curves.png", "tensorboard", "examples")
"""What a run writes into its output directory (and ``overwrite`` removes)."""


# -- the output directory -------------------------------------------------------------------------
def check_output_dir(output_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an output directory that is a file, or that holds a run, unless the run is to be
    continued (``resume``) or started over (``overwrite``). Reads only.

    Raises:
        ConfigError: both ``resume`` and ``overwrite``.
        VitzooError: ``output_dir`` (or a parent) is a file, or holds a run and neither
            ``resume`` nor ``overwrite`` is given.
    """
    if resume and overwrite:
        raise ConfigError("pass either resume (--resume: continue the run) or overwrite "
                          "(--overwrite: start it over), not both")
    for path in (output_dir, *output_dir.parents):
        if path.exists() and not path.is_dir():
            raise VitzooError(f"{path} is a file: pass a directory as the output (--output "
                              "DIR; it is created if missing)")
    found = [name for name in RUN_FILES if (output_dir / name).exists()]
    if found and not (resume or overwrite):
        raise VitzooError(f"{output_dir} already holds a run ({', '.join(found)}): continue it "
                          "with --resume (resume=True), start it over with --overwrite "
                          "(overwrite=True; its files are removed), or pass another --output")


def clear_run(output_dir: Path) -> None:
    """Remove the files of a run from ``output_dir`` (:data:`RUN_FILES`); others stay."""
    for name in RUN_FILES:
        path = output_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    logger.info("removed the previous run's files from %s", output_dir)


# -- random states --------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python's and torch's generators (CPU and every CUDA device): the model's random
    initialisation, dropout and stochastic depth. (The order of the samples and their
    augmentation are functions of the seed and the step, see :class:`StepSampler`.)"""
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The states of Python's and torch's generators, for :func:`set_rng_state`."""
    return {"torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python_rng": json.dumps(random.getstate(), default=list)}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators to a state from :func:`rng_state`."""
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    version, internal, gauss = json.loads(state["python_rng"])
    random.setstate((version, tuple(internal), gauss))


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore the generators' states after the block: what it draws (an evaluation through
    a random transform, say) does not change the draws of the training steps after it."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


# -- the state ------------------------------------------------------------------------------------
@dataclass
class TrainState:
    """What a checkpoint saves and resuming restores, as the training loop holds it."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None = None
    step: int = 0
    """Optimizer steps completed."""
    best: dict[str, float] = field(default_factory=dict)
    """The best evaluation so far (with its ``step``)."""
    rng: dict[str, Any] = field(default_factory=rng_state)
    """The random states as they were right after ``step`` (what a resumed run starts from)."""


def save_weights(model: nn.Module, path: Path) -> None:
    """``model`` as a self-describing ``.safetensors`` file (written atomically)."""
    save_model(model, path)


def save_checkpoint(state: TrainState, output_dir: Path, cfg: TrainConfig) -> None:
    """Write ``last.safetensors`` and ``train_state.pt`` for ``state.step`` (atomically)."""
    save_weights(state.model, output_dir / LAST_FILE)
    saved = {
        "step": state.step, "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": state.scaler.state_dict() if state.scaler is not None else None,
        "best": state.best, "config": json.dumps(cfg.to_dict()), **state.rng,
    }
    with atomic_path(output_dir / STATE_FILE) as tmp:
        torch.save(saved, tmp)


def resume_from(state: TrainState, output_dir: Path, device: torch.device) -> None:
    """Load ``output_dir``'s last checkpoint into ``state`` (weights, optimizer, schedule,
    scaler, step, best) and restore the random states saved with it.

    Raises:
        VitzooError: ``output_dir`` has no checkpoint.
    """
    state_path, weights = output_dir / STATE_FILE, output_dir / LAST_FILE
    if not state_path.is_file() or not weights.is_file():
        raise VitzooError(f"nothing to resume in {output_dir}: no {STATE_FILE} and "
                          f"{LAST_FILE}; start without resume")
    load_checkpoint(state.model, weights)
    state.model.to(device)
    # On the CPU: the random states must be CPU tensors; the optimizer moves its own state to
    # the parameters' device.
    saved = torch.load(state_path, map_location="cpu", weights_only=True)
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    if state.scaler is not None and saved.get("scaler"):
        state.scaler.load_state_dict(saved["scaler"])
    state.step, state.best = int(saved["step"]), dict(saved.get("best") or {})
    state.rng = {key: saved[key] for key in ("torch_rng", "cuda_rng", "python_rng")}
    set_rng_state(state.rng)
    logger.info("resuming %s from step %d", output_dir, state.step)


def saved_step(output_dir: Path) -> int | None:
    """The step of ``output_dir``'s checkpoint, or None when it has none (reads only the
    step: the file is memory-mapped)."""
    path = output_dir / STATE_FILE
    if not path.is_file():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
