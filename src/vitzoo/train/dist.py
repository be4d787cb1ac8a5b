"""Training in several processes under ``torchrun``: the process's place in the world, the
process group, the default device, mixed precision and the DistributedDataParallel wrapper."""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as torch_dist
from torch import nn

from .config import TrainConfig

__all__ = ["autocast", "barrier", "default_device", "setup", "shutdown", "sum_over_processes",
           "world", "wrap"]


def world() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment; (1, 0, 0) without it."""
    return (int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
            int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: torch.device) -> bool:
    """Join the process group of a torchrun job (NCCL on CUDA, gloo on CPU) unless already in
    one. Returns whether training is distributed (more than one process)."""
    if world()[0] == 1:
        return False
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def shutdown() -> None:
    """Leave the process group, if this process is in one."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def default_device() -> torch.device:
    """The local rank's CUDA device when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", world()[2])
    return torch.device("cpu")


def autocast(cfg: TrainConfig, device: torch.device
             ) -> tuple[contextlib.AbstractContextManager[None], torch.amp.GradScaler | None]:
    """The autocast context of ``cfg.amp`` on ``device`` and the gradient scaler fp16 needs
    (None for bf16 and full precision)."""
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return contextlib.nullcontext(), None
    if cfg.amp == "bf16" or (cfg.amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.autocast(device.type, dtype=torch.bfloat16), None
    scaler = torch.amp.GradScaler(device.type)
    return torch.autocast(device.type, dtype=torch.float16), scaler


def wrap(module: nn.Module, device: torch.device) -> nn.parallel.DistributedDataParallel:
    """``module`` in DistributedDataParallel, on the local device."""
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def sum_over_processes(value: float, device: torch.device) -> float:
    """The sum of ``value`` over all processes (``value`` itself in a single process)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return value
    total = torch.tensor([value], device=device)
    torch_dist.all_reduce(total)
    return total.item()


def barrier() -> None:
    """Wait for every process (nothing to wait for in a single process)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
