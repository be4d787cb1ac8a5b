"""The fine-tuning loop: deterministic global batches, gradient accumulation, evaluation and
checkpoints (the processes, devices and precision are in :mod:`.dist`, the checkpoints in
:mod:`.state`)."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .._utils import Progress
from ..data import LabelledImages
from ..errors import TrainingInterrupted, VitzooError
from . import dist
from .config import TrainConfig
from .distill import DistillationStudent, distillation_loss
from .metrics import MetricsLog, plot_curves
from .optim import create_optimizer
from .sampler import SeededDataset, StepSampler, micro_batch_for
from .schedule import lr_factor
from .state import (
    BEST_FILE,
    TrainState,
    check_output_dir,
    clear_run,
    preserved_rng,
    resume_from,
    rng_state,
    save_checkpoint,
    save_weights,
    seed_everything,
)

__all__ = ["TrainResult", "evaluate", "finetune", "hold_interrupts"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a fine-tuning run produced."""

    step: int
    final: dict[str, float] = field(default_factory=dict)
    """Evaluation of the last weights (top1, top5, loss in %, % and nats)."""
    best: dict[str, float] = field(default_factory=dict)
    output_dir: Path | None = None


# -- evaluation -----------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, data: LabelledImages, *, batch_size: int = 256,
             num_workers: int = 0, device: torch.device | str | None = None) -> dict[str, float]:
    """Top-1 and top-5 accuracy (%), mean cross-entropy and images/s of ``model`` on ``data``.

    ``data`` yields ``(image tensor, label)``.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    # A generator of its own: creating the loader draws a seed, which must not come from the
    # global generator (that would shift the dropout of the training steps after it).
    loader = DataLoader(data, batch_size=batch_size, num_workers=num_workers,
                        generator=torch.Generator())
    correct1 = correct5 = 0
    loss_sum, count = 0.0, 0
    start = time.perf_counter()
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        logits = model(images).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == labels).sum().item()
        correct5 += (top == labels[:, None]).any(dim=1).sum().item()
        count += labels.numel()
    seconds = time.perf_counter() - start
    model.train(was_training)
    if count == 0:
        raise VitzooError("the evaluation data is empty")
    return {"top1": 100.0 * correct1 / count, "top5": 100.0 * correct5 / count,
            "loss": loss_sum / count, "images_per_s": count / max(seconds, 1e-9),
            "count": float(count)}


# -- one run --------------------------------------------------------------------------------------
@dataclass
class _Run:
    """Everything the steps of one run share."""

    cfg: TrainConfig
    state: TrainState
    net: nn.Module
    """What the step calls: the model (or its :class:`DistillationStudent`), in DDP when
    distributed."""
    device: torch.device
    output_dir: Path
    autocast: Any
    teacher: nn.Module | None = None
    eval_set: LabelledImages | None = None
    world: int = 1
    main: bool = True
    """Rank 0: the process that evaluates, logs and writes files."""
    log: MetricsLog | None = None
    progress: Progress | None = None
    final: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)


def finetune(model: nn.Module, train_data: LabelledImages,
             eval_data: LabelledImages | None = None,
             config: TrainConfig | None = None, *, output_dir: str | Path,
             train_transform: Callable[[Any], Any] | None = None,
             eval_transform: Callable[[Any], Any] | None = None,
             teacher: nn.Module | None = None,
             resume: bool = False, overwrite: bool = False,
             device: torch.device | str | None = None) -> TrainResult:
    """Fine-tune ``model`` on ``train_data`` and evaluate on ``eval_data``.

    Runs the same under ``torchrun --nproc_per_node=N`` (DistributedDataParallel, gloo on CPU,
    NCCL on GPU): the global batch is split across processes and accumulation steps, so the
    updates do not depend on how it is split; only rank 0 writes files.

    ``config.seed`` seeds the order of the samples, their augmentation and dropout; the model
    was built before, so seed its initialisation yourself (:func:`seed_everything`, as
    :func:`finetune_on` does) for runs that repeat bit for bit.

    Ctrl-C (``KeyboardInterrupt``) saves a checkpoint of the last completed step (weights and
    ``train_state.pt``) and raises :class:`~vitzoo.errors.TrainingInterrupted`; ``resume``
    continues from it as if nothing had happened.

    Args:
        model: the model (built with the classes of the data; its head is trained as is).
        train_data: a dataset of ``(image, label)``; images go through ``train_transform``.
        eval_data: evaluated every ``config.eval_every`` steps and at the end, through
            ``eval_transform``.
        config: the recipe (default: the release's).
        output_dir: receives ``last.safetensors``, ``best.safetensors`` (self-describing),
            ``train_state.pt`` (for ``resume``), ``metrics.csv`` / ``.jsonl`` and
            ``curves.png``.
        teacher: a model whose logits guide the distillation head (``config.distill``).
        resume: continue from ``output_dir``'s last checkpoint exactly (weights, optimizer,
            schedule, step and random state); the metric rows of later steps are removed.
        overwrite: start over when ``output_dir`` holds a run, removing its files (without
            ``resume`` or ``overwrite``, such a directory is refused).
        device: default: the local CUDA device under torchrun, else CUDA if present, else CPU.

    Returns:
        A :class:`TrainResult`.

    Raises:
        TrainingInterrupted: Ctrl-C, after the checkpoint was saved.
        VitzooError: ``output_dir`` is a file, or holds a run and neither ``resume`` nor
            ``overwrite`` is given; ``resume`` without a checkpoint.
        ConfigError: the batch does not split over the processes; ``resume`` and
            ``overwrite`` together.
    """
    cfg = config or TrainConfig()
    world = dist.world()[0]
    micro_batch = micro_batch_for(cfg.batch_size, micro_batch=cfg.micro_batch, world=world)
    run = _setup(model, cfg, output_dir=Path(output_dir), teacher=teacher, resume=resume,
                 overwrite=overwrite, device=device)
    if eval_data is not None:
        run.eval_set = SeededDataset(eval_data, eval_transform)
    if micro_batch != cfg.micro_batch:
        logger.info("micro-batches of %d: %d process(es) share a batch of %d", micro_batch,
                    world, cfg.batch_size)
    sampler = StepSampler(len(cast(Sized, train_data)),  # map-style: a Dataset with __len__
                          batch_size=cfg.batch_size, micro_batch=micro_batch, world=run.world,
                          rank=dist.world()[1], seed=cfg.seed, start_step=run.state.step,
                          steps=cfg.steps)
    loader = DataLoader(SeededDataset(train_data, train_transform), batch_sampler=sampler,
                        num_workers=cfg.num_workers, generator=torch.Generator())
    if run.main:
        run.log = MetricsLog(run.output_dir, start_step=run.state.step)
        run.progress = Progress("training", unit="step")
    try:
        _train(run, loader, sampler.accumulation)
    except KeyboardInterrupt:
        raise _interrupted(run) from None
    finally:
        _close(run)
    if run.main:
        plot_curves(run.output_dir / "metrics.jsonl", run.output_dir / "curves.png")
    return TrainResult(step=run.state.step, final=run.final, best=run.state.best,
                       output_dir=run.output_dir)


def _setup(model: nn.Module, cfg: TrainConfig, *, output_dir: Path, teacher: nn.Module | None,
           resume: bool, overwrite: bool, device: torch.device | str | None) -> _Run:
    """Join the processes, check the output directory, seed, build the optimizer and schedule,
    resume, wrap the model."""
    if cfg.distill and teacher is None:
        raise VitzooError(f"distill={cfg.distill!r} needs a teacher model")
    device = torch.device(device) if device is not None else dist.default_device()
    distributed = dist.setup(device)
    world, rank, _ = dist.world()
    check_output_dir(output_dir, resume=resume, overwrite=overwrite)
    dist.barrier()  # every process has checked before rank 0 changes anything
    if overwrite and rank == 0:
        clear_run(output_dir)
    seed_everything(cfg.seed)
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    net = DistillationStudent(model) if cfg.distill else model  # checks the student
    optimizer = create_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total=cfg.steps, warmup=cfg.warmup_steps,
                                       schedule=cfg.schedule))
    autocast, scaler = dist.autocast(cfg, device)
    state = TrainState(model, optimizer, scheduler, scaler)
    if resume:
        resume_from(state, output_dir, device)
    if rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    if distributed:
        net = dist.wrap(net, device)
    model.train()
    return _Run(cfg=cfg, state=state, net=net, device=device, output_dir=output_dir,
                autocast=autocast, teacher=teacher, world=world, main=rank == 0)


def _train(run: _Run, loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
           accumulation: int) -> None:
    """The remaining optimizer steps, each over ``accumulation`` micro-batches."""
    micro, loss = 0, 0.0
    for images, labels in loader:
        micro += 1
        loss += _micro_step(run, images, labels, last=micro == accumulation)
        if micro < accumulation:
            continue
        _update(run)
        _after_step(run, loss)
        micro, loss = 0, 0.0


def _micro_step(run: _Run, images: torch.Tensor, labels: torch.Tensor, *, last: bool) -> float:
    """Forward and backward of one micro-batch; returns its share of the global mean loss."""
    images, labels = images.to(run.device), labels.to(run.device)
    # DDP averages gradients over processes; the loss is scaled to the global-batch mean.
    scale = run.world / run.cfg.batch_size
    net = run.net
    sync = (net.no_sync() if isinstance(net, nn.parallel.DistributedDataParallel) and not last
            else contextlib.nullcontext())
    with sync:
        with run.autocast:
            loss = _loss(run, images, labels).sum() * scale
        scaler = run.state.scaler
        scaled = scaler.scale(loss) if scaler is not None else loss
        scaled.backward()  # type: ignore[no-untyped-call]  # torch: Tensor.backward is untyped
    return loss.item() / run.world


def _loss(run: _Run, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample losses ``(B,)``."""
    cfg = run.cfg
    if cfg.distill:
        assert run.teacher is not None  # _setup refuses distill without a teacher
        with torch.no_grad():
            teacher_logits = run.teacher(images)
        cls_logits, dist_logits = run.net(images)
        return distillation_loss(cls_logits.float(), dist_logits.float(), teacher_logits.float(),
                                 labels, kind=cfg.distill, alpha=cfg.distill_alpha,
                                 tau=cfg.distill_tau, label_smoothing=cfg.label_smoothing)
    logits = run.net(images)
    return F.cross_entropy(logits.float(), labels, reduction="none",
                           label_smoothing=cfg.label_smoothing)


def _update(run: _Run) -> None:
    """Clip, step the optimizer and the schedule, count the step and keep the random state
    (Ctrl-C waits until all of it is done, so a checkpoint never holds half an update)."""
    state = run.state
    with hold_interrupts():
        if state.scaler is not None:
            state.scaler.unscale_(state.optimizer)
        if run.cfg.clip_grad_norm:
            nn.utils.clip_grad_norm_(state.model.parameters(), run.cfg.clip_grad_norm)
        if state.scaler is not None:
            state.scaler.step(state.optimizer)
            state.scaler.update()
        else:
            state.optimizer.step()
        state.optimizer.zero_grad(set_to_none=True)
        state.scheduler.step()
        state.step += 1
        state.rng = rng_state()


def _after_step(run: _Run, loss: float) -> None:
    """Report the step's loss; evaluate and checkpoint when due."""
    cfg, step = run.cfg, run.state.step
    loss = dist.sum_over_processes(loss, run.device)  # every process reports the global loss
    last = step == cfg.steps
    if run.main:
        assert run.progress is not None and run.log is not None  # finetune sets both on rank 0
        run.progress(step, cfg.steps, loss=loss)
        if step % cfg.log_every == 0 or last:
            run.log.write({"step": step, "split": "train", "loss": loss,
                           "lr": run.state.optimizer.param_groups[0]["lr"],
                           "time": time.perf_counter() - run.started})
        if run.eval_set is not None and (step % cfg.eval_every == 0 or last):
            _evaluate(run)
        if step % (cfg.checkpoint_every or cfg.eval_every) == 0 or last:
            save_checkpoint(run.state, run.output_dir, cfg)
    dist.barrier()


def _evaluate(run: _Run) -> None:
    """Evaluate the weights; keep them as ``best.safetensors`` when they are the best yet."""
    state, cfg = run.state, run.cfg
    assert run.eval_set is not None and run.log is not None  # _after_step checks; rank 0 logs
    with preserved_rng():  # the training steps draw the same numbers, evaluated or not
        run.final = evaluate(state.model, run.eval_set, batch_size=max(cfg.micro_batch, 64),
                             num_workers=cfg.num_workers, device=run.device)
    run.log.write({"step": state.step, "split": "eval", **run.final})
    logger.info("step %d: top-1 %.2f%%, loss %.4f", state.step, run.final["top1"],
                run.final["loss"])
    if not state.best or run.final["top1"] > state.best["top1"]:
        state.best = {**run.final, "step": state.step}
        save_weights(state.model, run.output_dir / BEST_FILE)
    state.model.train()


def _interrupted(run: _Run) -> TrainingInterrupted:
    """Save the last completed step (on rank 0) after Ctrl-C; the error to raise."""
    try:
        with hold_interrupts():  # a second Ctrl-C does not cut the checkpoint short
            if run.main:
                save_checkpoint(run.state, run.output_dir, run.cfg)
                logger.info("interrupted at step %d; saved %s", run.state.step,
                            run.output_dir)
    except KeyboardInterrupt:
        pass  # the second Ctrl-C, after the checkpoint was written
    return TrainingInterrupted(run.state.step, run.output_dir)


@contextlib.contextmanager
def hold_interrupts() -> Iterator[None]:
    """Delay Ctrl-C (SIGINT) until the block is done, then raise it as usual.

    Only the main thread receives signals; elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, Any]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append((signum,
                                                                                   frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
    if received and callable(previous):
        previous(*received[0])  # the default handler raises KeyboardInterrupt


def _close(run: _Run) -> None:
    if run.progress is not None:
        run.progress.close()
    if run.log is not None:
        run.log.close()
