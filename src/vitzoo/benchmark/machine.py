"""The machine a benchmark ran on, the peer libraries present, and the pinned thread count."""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import os
import platform

import torch

from .._version import __version__

__all__ = ["PEERS", "describe_machine", "library_version", "pin_threads"]

PEERS = ("timm", "transformers")


def library_version(name: str) -> str | None:
    """The installed version of ``name`` (``None`` when it is not installed); never imports it."""
    if importlib.util.find_spec(name) is None:
        return None
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def pin_threads(threads: int | None) -> int:
    """Pin torch's intra-op threads (default: every core this process may use); returns the
    number torch reports afterwards."""
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    return torch.get_num_threads()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(device: str = "cpu") -> dict[str, str]:
    """CPU model, cores, accelerator, torch / vitzoo / peer versions, threads and the date."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": f"{len(os.sched_getaffinity(0))} usable of {os.cpu_count()}",
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "vitzoo": __version__,
        "threads": str(torch.get_num_threads()),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["device"] = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    for peer in PEERS:
        info[peer] = library_version(peer) or "not installed"
    return info
