"""This process's place among the processes of one job (training or bulk prediction), as torchrun or the trainer's
launcher describes it in RANK, WORLD_SIZE and LOCAL_RANK, and its share of the machine's cores."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    """This process's place among the job's processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # index among the processes of this machine: picks the GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def world_from_environment() -> World:
    """The World torchrun (or launch.py) describes in RANK, WORLD_SIZE and LOCAL_RANK; SINGLE without them."""
    try:
        return World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
    except KeyError:
        return SINGLE


def cores_per_process(world: World) -> int:
    """The cores this process may use (its CPU affinity: a Slurm or container limit), shared out between
    the job's processes on this machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", world.size)))
