"""The fine-tuning loop: deterministic global batches, gradient accumulation, DDP, evaluation,
self-describing checkpoints and exact resume."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import VitzooError
from .config import TrainConfig
from .distill import distillation_loss
from .metrics import MetricsLog, plot_curves
from .optim import create_optimizer
from .sampler import SeededDataset, StepSampler
from .schedule import lr_factor

__all__ = ["TrainResult", "evaluate", "finetune"]

logger = logging.getLogger(__name__)

STATE_FILE = "train_state.pt"


@dataclass
class TrainResult:
    """What a fine-tuning run produced."""

    step: int
    final: dict[str, float] = field(default_factory=dict)
    """Evaluation of the last weights (top1, top5, loss in %, % and nats)."""
    best: dict[str, float] = field(default_factory=dict)
    output_dir: Path | None = None


# -- distributed helpers --------------------------------------------------------------------------
def _world() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment."""
    return (int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
            int(os.environ.get("LOCAL_RANK", "0")))


def _setup_distributed(device: torch.device) -> bool:
    world, _, _ = _world()
    if world == 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def _default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", _world()[2])
    return torch.device("cpu")


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return contextlib.nullcontext(), None
    if cfg.amp == "bf16" or (cfg.amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.autocast(device.type, dtype=torch.bfloat16), None
    scaler = torch.amp.GradScaler(device.type)
    return torch.autocast(device.type, dtype=torch.float16), scaler


# -- evaluation -----------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, *, batch_size: int = 256, num_workers: int = 0,
             device: torch.device | str | None = None) -> dict[str, float]:
    """Top-1 and top-5 accuracy (%), mean cross-entropy and images/s of ``model`` on ``data``.

    ``data`` yields ``(image tensor, label)``.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = DataLoader(data, batch_size=batch_size, num_workers=num_workers)
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


# -- checkpoints ----------------------------------------------------------------------------------
def _save(model: nn.Module, path: Path) -> None:
    from ..io import save_model

    save_model(model, path)


def _save_state(path: Path, step: int, optimizer, scheduler, scaler, best: dict[str, float],
                cfg: TrainConfig) -> None:
    from .._utils import atomic_path

    state = {
        "step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None, "best": best,
        "config": json.dumps(cfg.to_dict()),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python_rng": json.dumps(random.getstate(), default=list),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _progress(step: int, total: int, loss: float, started: float, start_step: int) -> None:
    if not sys.stderr.isatty():
        return
    done = step - start_step
    rate = done / max(time.perf_counter() - started, 1e-9)
    eta = (total - step) / max(rate, 1e-9)
    filled = int(30 * step / total)
    sys.stderr.write(f"\r  [{'#' * filled}{'.' * (30 - filled)}] step {step}/{total} "
                     f"loss {loss:.4f} {rate:.1f} it/s eta {eta:.0f}s ")
    if step == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


# -- the loop -------------------------------------------------------------------------------------
def finetune(model: nn.Module, train_data: Dataset, eval_data: Dataset | None = None,
             config: TrainConfig | None = None, *, output_dir: str | Path,
             train_transform=None, eval_transform=None, teacher: nn.Module | None = None,
             resume: bool = False, device: torch.device | str | None = None) -> TrainResult:
    """Fine-tune ``model`` on ``train_data`` and evaluate on ``eval_data``.

    Runs the same under ``torchrun --nproc_per_node=N`` (DistributedDataParallel, gloo on CPU,
    NCCL on GPU): the global batch is split across processes and accumulation steps, so the
    updates do not depend on how it is split; only rank 0 writes files.

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
            schedule, step and random state).
        device: default: the local CUDA device under torchrun, else CUDA if present, else CPU.

    Returns:
        A :class:`TrainResult`.
    """
    cfg = config or TrainConfig()
    output_dir = Path(output_dir)
    device = torch.device(device) if device is not None else _default_device()
    distributed = _setup_distributed(device)
    world, rank, _ = _world()
    main_process = rank == 0
    if cfg.distill and teacher is None:
        raise VitzooError(f"distill={cfg.distill!r} needs a teacher model")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    optimizer = create_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total=cfg.steps, warmup=cfg.warmup_steps,
                                       schedule=cfg.schedule))
    autocast, scaler = _autocast(cfg, device)
    start_step, best = 0, {}
    if resume:
        start_step, best = _resume(model, optimizer, scheduler, scaler, output_dir, device)
    if main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    net = (nn.parallel.DistributedDataParallel(model, device_ids=[device.index]
                                               if device.type == "cuda" else None)
           if distributed else model)
    sampler = StepSampler(len(train_data), batch_size=cfg.batch_size,
                          micro_batch=cfg.micro_batch, world=world, rank=rank, seed=cfg.seed,
                          start_step=start_step, steps=cfg.steps)
    loader = DataLoader(SeededDataset(train_data, train_transform), batch_sampler=sampler,
                        num_workers=cfg.num_workers)
    eval_set = SeededDataset(eval_data, eval_transform) if eval_data is not None else None
    log = MetricsLog(output_dir, resume=resume) if main_process else None
    checkpoint_every = cfg.checkpoint_every or cfg.eval_every
    scale = world / cfg.batch_size  # DDP averages over processes; we want the global mean
    model.train()
    step, micro, running, started = start_step, 0, 0.0, time.perf_counter()
    final: dict[str, float] = {}
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        micro += 1
        last_micro = micro == sampler.accumulation
        sync = contextlib.nullcontext() if (last_micro or not distributed) else net.no_sync()
        with sync:
            with autocast:
                loss = _loss(net, model, teacher, images, labels, cfg).sum() * scale
            (scaler.scale(loss) if scaler is not None else loss).backward()
        running += loss.item() / world
        if not last_micro:
            continue
        micro = 0
        if scaler is not None:
            scaler.unscale_(optimizer)
        if cfg.clip_grad_norm:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        if distributed:  # every process reports the same global loss
            total = torch.tensor([running], device=device)
            dist.all_reduce(total)
            running = total.item()
        if main_process:
            _progress(step, cfg.steps, running, started, start_step)
            if step % cfg.log_every == 0 or step == cfg.steps:
                log.write({"step": step, "split": "train", "loss": running,
                           "lr": optimizer.param_groups[0]["lr"],
                           "time": time.perf_counter() - started})
        running = 0.0
        evaluate_now = eval_set is not None and (step % cfg.eval_every == 0 or step == cfg.steps)
        if evaluate_now and main_process:
            final = evaluate(model, eval_set, batch_size=max(cfg.micro_batch, 64),
                             num_workers=cfg.num_workers, device=device)
            log.write({"step": step, "split": "eval", **final})
            logger.info("step %d: top-1 %.2f%%, loss %.4f", step, final["top1"], final["loss"])
            if not best or final["top1"] > best["top1"]:
                best = {**final, "step": step}
                _save(model, output_dir / "best.safetensors")
            model.train()
        if main_process and (step % checkpoint_every == 0 or step == cfg.steps):
            _save(model, output_dir / "last.safetensors")
            _save_state(output_dir / STATE_FILE, step, optimizer, scheduler, scaler, best, cfg)
        if distributed:
            dist.barrier()
    if main_process:
        log.close()
        plot_curves(output_dir / "metrics.jsonl", output_dir / "curves.png")
    return TrainResult(step=step, final=final, best=best, output_dir=output_dir)


def _loss(net: nn.Module, model: nn.Module, teacher: nn.Module | None, images: torch.Tensor,
          labels: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Per-sample losses ``(B,)``."""
    if cfg.distill:
        with torch.no_grad():
            teacher_logits = teacher(images)
        if not hasattr(model, "forward_distill"):
            raise VitzooError("distillation needs a distilled student (a *_distilled_* DeiT)")
        cls_logits, dist_logits = _distill_forward(net, model, images)
        return distillation_loss(cls_logits.float(), dist_logits.float(), teacher_logits.float(),
                                 labels, kind=cfg.distill, alpha=cfg.distill_alpha,
                                 tau=cfg.distill_tau, label_smoothing=cfg.label_smoothing)
    logits = net(images)
    return F.cross_entropy(logits.float(), labels, reduction="none",
                           label_smoothing=cfg.label_smoothing)


def _distill_forward(net: nn.Module, model: nn.Module,
                     images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # DDP hooks run only through the wrapper's forward, so route forward_distill through it.
    if isinstance(net, nn.parallel.DistributedDataParallel):
        original = model.forward
        model.forward = model.forward_distill  # type: ignore[method-assign]
        try:
            return net(images)
        finally:
            model.forward = original  # type: ignore[method-assign]
    return model.forward_distill(images)


def _resume(model: nn.Module, optimizer, scheduler, scaler, output_dir: Path,
            device: torch.device) -> tuple[int, dict[str, float]]:
    from ..loading import load_checkpoint

    state_path, weights = output_dir / STATE_FILE, output_dir / "last.safetensors"
    if not state_path.is_file() or not weights.is_file():
        raise VitzooError(f"nothing to resume in {output_dir}: no {STATE_FILE} and "
                          "last.safetensors; start without resume")
    load_checkpoint(model, weights)
    model.to(device)
    state = torch.load(state_path, map_location=device, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    py_state = json.loads(state["python_rng"])
    random.setstate((py_state[0], tuple(py_state[1]), py_state[2]))
    logger.info("resumed %s at step %d", output_dir, state["step"])
    return int(state["step"]), dict(state.get("best") or {})

