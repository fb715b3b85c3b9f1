"""This process under torchrun (or alone): joining the process group, and means over processes."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from ssd_zoo.errors import InputError


@dataclass
class Dist:
    """This process under torchrun (or alone): ``rank``, ``world_size``, ``device``; ``main`` is rank 0."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def world_size() -> int:
    """The number of processes torchrun started (its ``WORLD_SIZE``), 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup_distributed(device: str) -> Dist:
    """Join the torchrun process group (nccl on CUDA, gloo on the CPU) when ``WORLD_SIZE`` > 1.

    ``device``: ``"cpu"``, ``"cuda"`` (each process takes the GPU of its ``LOCAL_RANK``) or ``"cuda:N"`` alone."""
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r} but torch.cuda.is_available() is False; pass --device cpu")
    processes = world_size()
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if kind == "cuda":
        index = torch.device(device).index if processes == 1 and torch.device(device).index is not None else local_rank
        torch.cuda.set_device(index)
        local_rank = index
    if processes > 1:
        dist.init_process_group(backend="nccl" if kind == "cuda" else "gloo")
    return Dist(rank, processes, torch.device("cuda", local_rank) if kind == "cuda" else torch.device("cpu"))


def all_reduce_mean(values: Tensor, ctx: Dist) -> Tensor:
    """The mean of ``values`` over processes (itself when alone)."""
    if ctx.world_size > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= ctx.world_size
    return values


def barrier_and_leave(ctx: Dist) -> None:
    """Wait for every process, then leave the process group (nothing when alone)."""
    if ctx.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
