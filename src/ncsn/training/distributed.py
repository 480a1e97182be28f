"""Multi-process training under torchrun: the process group, who is rank 0, barriers.

``torchrun --nproc_per_node N -m ncsn.cli train …`` (multi-node by torchrun's own options) sets
RANK, WORLD_SIZE and LOCAL_RANK; without them training runs in one process as usual. Backend:
NCCL on CUDA, gloo on the CPU. Each rank computes its share of every global batch (the levels,
noise, dequantization and flips are drawn for the whole batch from the shared seeded generators
and sliced), so N ranks with global batch B follow the same trajectory as one process with B.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints, logs, previews and holds the run lock."""
        return self.rank == 0


def world() -> World:
    """This process's place, from torchrun's environment (one process when it is not set)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def process_group(w: World, device: torch.device) -> Iterator[None]:
    """Initialise the default process group for ``w`` (if several ranks) and always destroy it."""
    if w.size == 1:
        yield
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(w: World) -> None:
    if w.size > 1:
        dist.barrier()


def mean(w: World, value: float, device: torch.device) -> float:
    """The mean of a float over ranks (used for the logged loss only)."""
    if w.size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / w.size


def flag(w: World, value: bool, device: torch.device) -> bool:
    """Rank 0's ``value`` on every rank (so that all ranks stop at the same step)."""
    if w.size == 1:
        return value
    t = torch.tensor([1.0 if value else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())
