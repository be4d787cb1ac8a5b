"""The order of training samples as a pure function of (seed, step): the same global batches
whatever the number of processes or accumulation steps, and resumable at any step."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from typing import Any, cast

import torch

from ..data import LabelledImages
from ..errors import ConfigError

__all__ = ["SeededDataset", "StepSampler", "micro_batch_for"]


def micro_batch_for(batch_size: int, *, micro_batch: int, world: int) -> int:
    """The micro-batch each of ``world`` processes uses for its share of the global batch:
    ``micro_batch`` when it divides the share, else the largest divisor of the share that is
    not larger (the updates do not depend on the split, only memory and speed do).

    Raises:
        ConfigError: the global batch does not split evenly over the processes.
    """
    if batch_size % world:
        lower, upper = batch_size // world * world, (batch_size // world + 1) * world
        examples = " or ".join(str(n) for n in (lower, upper) if n > 0)
        raise ConfigError(f"batch_size={batch_size} does not split into {world} processes: "
                          f"pass --batch-size N with N a multiple of {world} (e.g. {examples})")
    share = batch_size // world
    return max(d for d in range(1, min(micro_batch, share) + 1) if share % d == 0)


class StepSampler:
    """Yields the micro-batches of one process, step after step, from ``start_step`` on.

    Epoch e is a permutation of the dataset drawn from ``seed + e``; step s takes the global
    batch ``perm[offset * B:(offset + 1) * B]`` (the remainder of an epoch is dropped); process
    r of ``world`` takes its contiguous share and cuts it into micro-batches. Each index comes
    with a per-sample seed for the data augmentation.
    """

    def __init__(self, num_samples: int, *, batch_size: int, micro_batch: int, world: int = 1,
                 rank: int = 0, seed: int = 0, start_step: int = 0, steps: int) -> None:
        if batch_size % world or (batch_size // world) % micro_batch:
            raise ConfigError(f"batch_size={batch_size} must split into {world} process(es) x "
                              f"micro-batches of {micro_batch}")
        if num_samples < batch_size:
            raise ConfigError(f"the dataset has {num_samples} samples, fewer than one batch "
                              f"of {batch_size}: pass a smaller batch size (--batch-size)")
        self.num_samples, self.batch_size, self.micro_batch = num_samples, batch_size, micro_batch
        self.world, self.rank, self.seed = world, rank, seed
        self.start_step, self.steps = start_step, steps
        self.steps_per_epoch = num_samples // batch_size
        self.accumulation = batch_size // world // micro_batch
        self._perm_epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def global_batch(self, step: int) -> torch.Tensor:
        epoch, offset = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._perm = torch.randperm(self.num_samples, generator=generator)
            self._perm_epoch = epoch
        return self._perm[offset * self.batch_size:(offset + 1) * self.batch_size]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        share = self.batch_size // self.world
        for step in range(self.start_step, self.steps):
            batch = self.global_batch(step)[self.rank * share:(self.rank + 1) * share]
            epoch = step // self.steps_per_epoch
            for start in range(0, share, self.micro_batch):
                chunk = batch[start:start + self.micro_batch].tolist()
                yield [(i, (self.seed * 1_000_003 + epoch) * 1_000_033 + i) for i in chunk]

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.accumulation


class SeededDataset(LabelledImages):
    """Applies ``transform`` to ``dataset[i]``. Indexed with ``(i, seed)`` (as
    :class:`StepSampler` does), the transform runs under that seed, which depends only on the
    sample and the epoch, so random augmentation does not depend on how batches are split."""

    def __init__(self, dataset: LabelledImages,
                 transform: Callable[[Any], Any] | None = None) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(cast(Sized, self.dataset))  # map-style: torch's Dataset declares no __len__

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[Any, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        image, label = self.dataset[index]
        if self.transform is None:
            return image, label
        if seed is None:  # evaluation: deterministic transforms, no seed needed
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed % (2**63))
            return self.transform(image), label
